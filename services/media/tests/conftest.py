from __future__ import annotations

import itertools
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from joserfc.jwk import OKPKey
from media_support import Client, new_key, sign, start_auth

from marquee_media.app import register
from marquee_media.settings import MediaSettings
from marquee_testing.fixtures.seaweedfs import S3Endpoint
from marquee_testing.inprocess import RunningService, serving

_ids = itertools.count()


@pytest.fixture(scope="session")
def signing_key() -> OKPKey:
    return new_key()


@pytest.fixture(scope="session")
async def auth_address(signing_key: OKPKey) -> AsyncIterator[str]:
    server, address = await start_auth(signing_key)
    yield address
    await server.stop(None)


SettingsFactory = Callable[..., MediaSettings]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def media_settings(
    request: pytest.FixtureRequest, tmp_path: Path, auth_address: str, backend: str
) -> SettingsFactory:
    """Settings for this test's backend; keyword arguments override."""

    def make(**overrides: Any) -> MediaSettings:
        values: dict[str, Any] = {
            "grpc_port": 0,
            "metrics_port": -1,
            "auth_address": auth_address,
            "storage": backend,
            "storage_dir": tmp_path / "objects",
            "transcode_dir": tmp_path / "transcode",
            "fetch_allow_private": True,
            "libvips_shutdown": False,
        }
        if backend == "s3":
            s3: S3Endpoint = request.getfixturevalue("seaweedfs_server")
            values |= {
                "s3_endpoint": s3.url,
                "s3_region": s3.region,
                "s3_access_key": s3.access_key,
                "s3_secret_key": s3.secret_key,
                "s3_bucket": f"media-{next(_ids)}-{uuid.uuid4().hex[:8]}",
                "s3_timeout": 5.0,
            }
        values |= overrides
        return MediaSettings(**values)

    return make


@pytest.fixture
async def media(media_settings: SettingsFactory) -> AsyncIterator[RunningService]:
    async with serving("media", media_settings(), register) as running:
        yield running


@pytest.fixture
def alice(media: RunningService, signing_key: OKPKey) -> Client:
    return Client(media.channel, sign(signing_key, "alice"))


@pytest.fixture
def bob(media: RunningService, signing_key: OKPKey) -> Client:
    return Client(media.channel, sign(signing_key, "bob"))


def rpc_code(exc: grpc.aio.AioRpcError) -> grpc.StatusCode:
    return exc.code()


def make_clip(ffmpeg: str, path: Path, seconds: int, size: str) -> bytes:
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-g", "25", "-c:a", "aac", "-shortest", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture(scope="session")
def short_clip(ffmpeg_paths: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """5 s of 640x360 H.264/AAC: stream-copyable at its own size."""
    return make_clip(ffmpeg_paths[0], tmp_path_factory.mktemp("clips") / "short.mp4", 5, "640x360")


@pytest.fixture(scope="session")
def long_clip(ffmpeg_paths: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """60 s at 160x90: with real-time pacing its ffmpeg runs for the whole test."""
    return make_clip(ffmpeg_paths[0], tmp_path_factory.mktemp("clips") / "long.mp4", 60, "160x90")
