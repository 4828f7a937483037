"""`marquee media put|get|stat|rm|transcode` against an in-process media service.

Media verifies access tokens against auth's JWKS; a one-RPC stand-in serves it
here (signing keys and all), as media's own tests do, so no auth database is
needed for the commands' part.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey
from typer.testing import CliRunner, Result

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_authn import ACCESS_TOKEN_ALGORITHM
from marquee_cli import credentials
from marquee_cli.main import app
from marquee_media.app import register
from marquee_media.settings import MediaSettings
from marquee_testing.inprocess import RunningService, serving

runner = CliRunner()


class Jwks(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, key: OKPKey) -> None:
        self.jwks = json.dumps(KeySet([OKPKey.import_key(key.as_dict(private=False))]).as_dict())

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(jwks_json=self.jwks)


@pytest.fixture(scope="module")
def key() -> OKPKey:
    return OKPKey.generate_key(
        "Ed25519", parameters={"kid": "cli-test", "alg": ACCESS_TOKEN_ALGORITHM}, private=True
    )


def token(key: OKPKey, subject: str = "alice") -> str:
    now = int(time.time())
    claims = {"iss": "marquee-auth", "sub": subject, "sid": f"s-{subject}", "typ": "access",
              "iat": now, "exp": now + 3600}  # fmt: skip
    header = {"alg": ACCESS_TOKEN_ALGORITHM, "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[ACCESS_TOKEN_ALGORITHM])


@pytest.fixture
async def media(
    key: OKPKey, tmp_path: Path, ffmpeg_paths: tuple[str, str]
) -> AsyncIterator[RunningService]:
    auth = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(Jwks(key), auth)  # type: ignore[abstract]
    port = auth.add_insecure_port("127.0.0.1:0")
    await auth.start()
    settings = MediaSettings(
        grpc_port=0,
        metrics_port=-1,
        auth_address=f"127.0.0.1:{port}",
        storage="local",
        storage_dir=tmp_path / "objects",
        transcode_dir=tmp_path / "transcode",
        ffmpeg=ffmpeg_paths[0],
        ffprobe=ffmpeg_paths[1],
        libvips_shutdown=False,
    )
    try:
        async with serving("media", settings, register) as running:
            yield running
    finally:
        await auth.stop(None)


async def marquee(service: RunningService, *args: str, token: str | None = None) -> Result:
    argv = ["media", *args, "--address", service.address]
    env = {"MARQUEE_TOKEN": token} if token else {}
    # The command blocks on its own channel: off this loop, which serves the service.
    return await asyncio.to_thread(runner.invoke, app, argv, env=env)


def error_of(result: Result) -> str:
    assert result.exit_code == 1, result.output
    return result.output


async def test_put_get_range_stat_rm(media: RunningService, key: OKPKey, tmp_path: Path) -> None:
    alice = token(key)
    content = os.urandom(3 * 256 * 1024 + 12_345)  # several chunks and a partial one
    source = tmp_path / "clip.mp4"
    source.write_bytes(content)

    put = await marquee(media, "put", "videos/1.mp4", str(source), "--json", token=alice)
    assert put.exit_code == 0, put.output
    stored = json.loads(put.stdout)
    assert stored["size"] == str(len(content))
    assert stored["content_type"] == "video/mp4"  # guessed from the name

    again = await marquee(media, "put", "videos/1.mp4", str(source), token=alice)
    assert "ALREADY_EXISTS" in error_of(again)

    copy = tmp_path / "copy.mp4"
    got = await marquee(media, "get", "videos/1.mp4", str(copy), token=alice)
    assert got.exit_code == 0, got.output
    assert copy.read_bytes() == content

    part = await marquee(
        media, "get", "videos/1.mp4", "--offset", "1000", "--length", "300", token=alice
    )
    assert part.exit_code == 0, part.output
    assert part.stdout_bytes == content[1000:1300]

    stat = await marquee(media, "stat", "videos/1.mp4", "--json", token=alice)
    assert json.loads(stat.stdout)["sha256"] == stored["sha256"]

    assert (await marquee(media, "rm", "videos/1.mp4", token=alice)).exit_code == 0
    missing = await marquee(media, "get", "videos/1.mp4", str(copy), token=alice)
    assert "NOT_FOUND" in error_of(missing)
    assert copy.read_bytes() == content  # a failed get leaves the old file alone
    gone = await marquee(media, "rm", "videos/1.mp4", token=alice)
    assert gone.exit_code == 1
    assert "no object" in gone.output


async def test_bad_input_and_missing_or_bad_tokens(
    media: RunningService, key: OKPKey, tmp_path: Path
) -> None:
    missing_file = await marquee(media, "put", "k", str(tmp_path / "nope"), token=token(key))
    assert "cannot read" in error_of(missing_file)

    data_dir = tmp_path / "suite"
    no_token = await asyncio.to_thread(
        runner.invoke,
        app,
        ["media", "stat", "k", "--address", media.address, "--data-dir", str(data_dir)],
        env={"MARQUEE_TOKEN": ""},
    )
    assert "no access token" in error_of(no_token)

    forged = await marquee(media, "stat", "k", token="not.a.token")
    assert "UNAUTHENTICATED" in error_of(forged)
    other_key = OKPKey.generate_key(
        "Ed25519", parameters={"kid": "cli-test", "alg": ACCESS_TOKEN_ALGORITHM}, private=True
    )
    wrong_signer = await marquee(media, "stat", "k", token=token(other_key))
    assert "UNAUTHENTICATED" in error_of(wrong_signer)

    bad_range = await marquee(media, "get", "k", "--offset", "-1", token=token(key))
    assert bad_range.exit_code == 2  # a usage error, before any call


async def test_a_saved_login_is_used(media: RunningService, key: OKPKey, tmp_path: Path) -> None:
    data_dir = tmp_path / "suite"
    tokens = auth_pb2.Tokens(access_token=token(key), refresh_token="r", user_id="alice")
    tokens.access_token_expires_at.FromSeconds(int(time.time()) + 3600)
    path = credentials.save(data_dir, tokens, auth_address=None)
    assert path.stat().st_mode & 0o777 == 0o600
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["media", "stat", "k", "--address", media.address, "--data-dir", str(data_dir)],
        env={"MARQUEE_TOKEN": ""},
    )
    assert "NOT_FOUND" in error_of(result)  # authenticated: the object is just absent


async def test_transcode_copies_a_playable_hls_tree(
    media: RunningService, key: OKPKey, tmp_path: Path, ffmpeg_paths: tuple[str, str]
) -> None:
    ffmpeg, ffprobe = ffmpeg_paths
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-t", "3",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    alice = token(key)
    assert (await marquee(media, "put", "v/clip.mp4", str(clip), token=alice)).exit_code == 0

    out = tmp_path / "hls"
    done = await marquee(media, "transcode", "v/clip.mp4", "--out", str(out), "--json", token=alice)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["state"] == "TRANSCODE_STATE_COMPLETED"
    master = out / "master.m3u8"
    assert master.read_text().startswith("#EXTM3U")
    # The copied tree plays as a whole: ffprobe follows master -> variant -> segments.
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(master)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert float(probe.stdout.strip().splitlines()[0]) == pytest.approx(3.0, abs=0.5)
