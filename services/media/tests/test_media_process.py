"""The media service as its own process: kill -9 leaves nothing once it restarts; a
SIGTERM ends sessions and libvips and exits cleanly (M-5, M-6)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
import pyvips  # type: ignore[import-untyped]
from joserfc.jwk import OKPKey
from media_support import Client, sign
from test_media_transcode import chunks, group_alive, is_ffmpeg, start, until

from marquee.media.v1 import media_pb2

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)


class MediaProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port_file = Path(self.env["MARQUEE_MEDIA_PORT_FILE"])
        port_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "marquee_media"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "media did not start"
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text().strip()}"

    def ffmpeg_groups(self) -> set[int]:
        assert self.proc is not None
        groups = set()
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if is_ffmpeg(child):
                    groups.add(os.getpgid(child.pid))
            except (psutil.Error, ProcessLookupError):
                continue
        return groups


@pytest.fixture
def media_process(
    tmp_path: Path, auth_address: str, ffmpeg_paths: tuple[str, str], backend: str
) -> Iterator[MediaProcess]:
    env = dict(os.environ)
    env |= {
        "MARQUEE_MEDIA_GRPC_PORT": "0",
        "MARQUEE_MEDIA_METRICS_PORT": "-1",
        "MARQUEE_MEDIA_PORT_FILE": str(tmp_path / "media.port"),
        "MARQUEE_MEDIA_AUTH_ADDRESS": auth_address,
        "MARQUEE_MEDIA_STORAGE_DIR": str(tmp_path / "media"),
        "MARQUEE_MEDIA_FFMPEG": ffmpeg_paths[0],
        "MARQUEE_MEDIA_FFPROBE": ffmpeg_paths[1],
        "MARQUEE_MEDIA_TRANSCODE_REALTIME": "true",
        "MARQUEE_MEDIA_SHUTDOWN_GRACE_SECONDS": "5",
    }
    process = MediaProcess(env, tmp_path / "media.log")
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


async def test_kill_9_then_restart_leaves_nothing_and_sigterm_exits_cleanly(
    media_process: MediaProcess, signing_key: OKPKey, long_clip: bytes, tmp_path: Path
) -> None:
    transcode_root = tmp_path / "media" / "transcode"
    media_process.start()
    async with grpc.aio.insecure_channel(media_process.address) as channel:
        alice = Client(channel, sign(signing_key, "alice"))
        await alice.put("v/long.mp4", chunks(long_clip), content_type="video/mp4")
        session = await start(alice, "v/long.mp4")
        state = await alice.stub.GetTranscode(
            media_pb2.GetTranscodeRequest(session_id=session.session_id), metadata=alice.metadata
        )
    groups = media_process.ffmpeg_groups()
    assert len(groups) == 1, state
    assert (transcode_root / session.session_id).is_dir()

    assert media_process.proc is not None
    media_process.proc.kill()  # kill -9: no shutdown hook runs
    media_process.proc.wait()
    # ffmpeg got the death signal; its files are there until the next start.
    await until(lambda: not any(group_alive(g) for g in groups), what="ffmpeg gone")
    assert (transcode_root / session.session_id).is_dir()

    media_process.start()
    assert list(transcode_root.iterdir()) == []
    async with grpc.aio.insecure_channel(media_process.address) as channel:
        alice = Client(channel, sign(signing_key, "alice"))
        session = await start(alice, "v/long.mp4")
        # libvips in use before the shutdown.
        await alice.put("i/a.jpg", [_jpeg()], content_type="image/jpeg")
        await alice.stub.Thumbnail(
            media_pb2.ThumbnailRequest(key="i/a.jpg", width=64), metadata=alice.metadata
        )
    groups = media_process.ffmpeg_groups()
    assert len(groups) == 1
    media_process.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(media_process.proc.wait, 30)
    assert code == 0, media_process.log.read_text()[-2000:]
    assert not any(group_alive(g) for g in groups)
    assert list(transcode_root.iterdir()) == []


def _jpeg() -> bytes:
    return bytes(pyvips.Image.black(200, 100).write_to_buffer(".jpg"))
