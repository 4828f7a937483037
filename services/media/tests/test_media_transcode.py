"""Transcode sessions with real ffmpeg on clips ffmpeg generates itself (M-5)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import psutil
import pytest
from conftest import SettingsFactory
from google.protobuf.duration_pb2 import Duration
from joserfc.jwk import OKPKey
from media_support import Client, sign

from marquee.media.v1 import media_pb2
from marquee_media.app import register
from marquee_testing.inprocess import RunningService, serving

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)
MIB = 1024 * 1024


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + MIB] for i in range(0, len(data), MIB)]


def is_ffmpeg(process: psutil.Process) -> bool:
    # Also before setpriv (the death-signal wrapper) has exec'd ffmpeg.
    return any(Path(arg).name == "ffmpeg" for arg in process.cmdline()[:6])


def ffmpeg_groups() -> set[int]:
    """Process groups of ffmpeg processes that are our descendants."""
    groups = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if is_ffmpeg(child):
                groups.add(os.getpgid(child.pid))
        except (psutil.Error, ProcessLookupError):
            continue
    return groups


def group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, ProcessLookupError):
            continue
    return False


async def until(condition: Callable[[], bool], seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def settings_with_ffmpeg(
    media_settings: SettingsFactory, ffmpeg_paths: tuple[str, str]
) -> SettingsFactory:
    def make(**overrides: object) -> object:
        return media_settings(ffmpeg=ffmpeg_paths[0], ffprobe=ffmpeg_paths[1], **overrides)

    return make  # type: ignore[return-value]


@pytest.fixture
async def transcoding(settings_with_ffmpeg: SettingsFactory) -> AsyncIterator[RunningService]:
    async with serving("media", settings_with_ffmpeg(segment_wait=10), register) as running:
        yield running


async def start(client: Client, key: str, **fields: object) -> media_pb2.TranscodeSession:
    answer = await client.stub.StartTranscode(
        media_pb2.StartTranscodeRequest(source_key=key, **fields),  # type: ignore[arg-type]
        metadata=client.metadata,
        timeout=60,
    )
    return answer.session


async def get(client: Client, session_id: str) -> media_pb2.TranscodeSession:
    answer = await client.stub.GetTranscode(
        media_pb2.GetTranscodeRequest(session_id=session_id), metadata=client.metadata, timeout=10
    )
    return answer.session


async def segment(client: Client, session_id: str, name: str) -> tuple[int, bytes]:
    call = client.stub.GetSegment(
        media_pb2.GetSegmentRequest(session_id=session_id, name=name),
        metadata=client.metadata,
        timeout=30,
    )
    size, body = -1, bytearray()
    async for message in call:
        if message.WhichOneof("part") == "header":
            size = message.header.size
            assert message.header.content_type == "video/mp2t"
        else:
            body += message.chunk
    return size, bytes(body)


async def test_a_session_produces_hls_and_reports_progress(
    transcoding: RunningService, signing_key: OKPKey, short_clip: bytes
) -> None:
    alice = Client(transcoding.channel, sign(signing_key, "alice"))
    await alice.put("v/short.mp4", chunks(short_clip), content_type="video/mp4")
    session = await start(
        alice,
        "v/short.mp4",
        renditions=[
            media_pb2.Rendition(name="360p"),  # the source's size: stream copy
            media_pb2.Rendition(name="180p", height=180, video_bitrate=300_000),
        ],
        segment_duration=Duration(seconds=2),
    )
    assert list(session.variants) == ["360p", "180p"]
    assert abs(session.source_duration.ToTimedelta().total_seconds() - 5) < 0.5
    # The first segment can be asked for right away: GetSegment waits for it.
    size, body = await segment(alice, session.session_id, "180p/seg_00000.ts")
    assert size == len(body) > 0
    assert body[0] == 0x47  # an MPEG-TS sync byte
    done = session
    deadline = time.monotonic() + 60
    while done.state == media_pb2.TRANSCODE_STATE_RUNNING:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
        done = await get(alice, session.session_id)
    assert done.state == media_pb2.TRANSCODE_STATE_COMPLETED, done.error
    assert done.transcoded.ToTimedelta().total_seconds() >= 4.5
    master = await alice.stub.GetPlaylist(
        media_pb2.GetPlaylistRequest(session_id=session.session_id), metadata=alice.metadata
    )
    assert master.content_type == "application/vnd.apple.mpegurl"
    assert "#EXT-X-STREAM-INF" in master.playlist
    assert "360p/index.m3u8" in master.playlist
    for variant in ("360p", "180p"):
        media = await alice.stub.GetPlaylist(
            media_pb2.GetPlaylistRequest(session_id=session.session_id, variant=variant),
            metadata=alice.metadata,
        )
        names = [ln for ln in media.playlist.splitlines() if ln and not ln.startswith("#")]
        assert names
        assert all(name.startswith(f"{variant}/seg_") for name in names)
        assert "#EXT-X-ENDLIST" in media.playlist
        for name in names:
            size, body = await segment(alice, session.session_id, name)
            assert size == len(body) > 0


async def test_default_profile_keeps_to_the_source_size(
    transcoding: RunningService, signing_key: OKPKey, short_clip: bytes
) -> None:
    alice = Client(transcoding.channel, sign(signing_key, "alice"))
    await alice.put("v/short.mp4", chunks(short_clip), content_type="video/mp4")
    session = await start(alice, "v/short.mp4")
    assert list(session.variants) == ["360p"]  # 1080p/720p/480p are larger than the source


async def test_sessions_belong_to_their_owner_and_bad_requests(
    transcoding: RunningService, signing_key: OKPKey, short_clip: bytes
) -> None:
    alice = Client(transcoding.channel, sign(signing_key, "alice"))
    bob = Client(transcoding.channel, sign(signing_key, "bob"))
    await alice.put("v/short.mp4", chunks(short_clip), content_type="video/mp4")
    session = await start(alice, "v/short.mp4")
    sid = session.session_id
    calls: list[Callable[[Client], Awaitable[object]]] = [
        lambda c: get(c, sid),
        lambda c: c.stub.GetPlaylist(
            media_pb2.GetPlaylistRequest(session_id=sid), metadata=c.metadata
        ),
        lambda c: segment(c, sid, "360p/seg_00000.ts"),
        lambda c: c.stub.StopTranscode(
            media_pb2.StopTranscodeRequest(session_id=sid), metadata=c.metadata
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(bob)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await get(alice, sid)).session_id == sid
    bad: list[tuple[dict[str, object], grpc.StatusCode]] = [
        ({"source_key": "nothing.mp4"}, grpc.StatusCode.NOT_FOUND),
        ({"source_key": "../x"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"profile": "cinema"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"renditions": [media_pb2.Rendition(name="Bad Name")]}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"segment_duration": Duration(seconds=0, nanos=1)}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"ttl": Duration(seconds=-1)}, grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for fields, code in bad:
        key = str(fields.pop("source_key", "v/short.mp4"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await start(alice, key, **fields)
        assert caught.value.code() == code, fields
    await alice.put("v/text", [b"not a video"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await start(alice, "v/text")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await segment(alice, sid, "360p/../../source")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get(alice, "no-such-session")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    stopped = await alice.stub.StopTranscode(
        media_pb2.StopTranscodeRequest(session_id=sid), metadata=alice.metadata
    )
    assert stopped.stopped
    again = await alice.stub.StopTranscode(
        media_pb2.StopTranscodeRequest(session_id=sid), metadata=alice.metadata
    )
    assert not again.stopped


async def test_ten_sessions_evicted_stopped_expired_and_shut_down_leave_no_ffmpeg(
    settings_with_ffmpeg: SettingsFactory, signing_key: OKPKey, long_clip: bytes, tmp_path: Path
) -> None:
    settings = settings_with_ffmpeg(
        transcode_max_sessions=4, transcode_realtime=True, transcode_ttl=60
    )
    seen: set[int] = set()
    async with serving("media", settings, register) as media:
        alice = Client(media.channel, sign(signing_key, "alice"))
        await alice.put("v/long.mp4", chunks(long_clip), content_type="video/mp4")
        sessions = []
        for _ in range(10):
            sessions.append(await start(alice, "v/long.mp4"))
            groups = ffmpeg_groups()
            seen |= groups
            assert len(groups) <= 4  # the cache holds at most 4: older ones were evicted
        assert len(seen) == 10
        for evicted in sessions[:6]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await get(alice, evicted.session_id)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        live = {s.session_id for s in sessions[6:]}
        on_disk = {p.name for p in settings.transcode_root.iterdir()}
        assert on_disk == live
        # Stop one, let one expire (its TTL was 60 s: ask for a short one).
        await alice.stub.StopTranscode(
            media_pb2.StopTranscodeRequest(session_id=sessions[6].session_id),
            metadata=alice.metadata,
        )
        short = await start(alice, "v/long.mp4", ttl=Duration(seconds=1))
        seen |= ffmpeg_groups()
        await until(
            lambda: not (settings.transcode_root / short.session_id).exists(), what="expiry"
        )
        assert 0 < len(ffmpeg_groups()) <= 3
    # Shutdown: every remaining session is ended with the service.
    await until(lambda: not any(group_alive(g) for g in seen), what="no ffmpeg group left")
    assert list(settings.transcode_root.iterdir()) == []


async def test_a_restart_removes_what_a_killed_process_left(
    settings_with_ffmpeg: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_with_ffmpeg()
    orphan = settings.transcode_root / "leftover-session-0001" / "out"
    orphan.mkdir(parents=True)
    (orphan / "seg_00000.ts").write_bytes(b"x")
    async with serving("media", settings, register):
        assert list(settings.transcode_root.iterdir()) == []
