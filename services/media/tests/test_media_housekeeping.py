"""The lease-gated housekeeping job (marquee-jobs on media's own database): stale
uploads aborted and orphaned transcode directories removed, on both backends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import boto3  # type: ignore[import-untyped]
from conftest import SettingsFactory

from marquee_media.app import register
from marquee_media.settings import MediaSettings
from marquee_testing.coordinator import CoordinatorCluster
from marquee_testing.inprocess import serving


def stale_upload(settings: MediaSettings) -> tuple[object, str]:
    """Leave an upload behind as a killed process would; returns how to see it."""
    if settings.storage == "local":
        part = settings.storage_dir / "uploads" / "left-by-a-crash.part"
        part.write_bytes(b"half an object")
        return part, "local"
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value()
        if settings.s3_secret_key
        else None,
        region_name=settings.s3_region,
    )
    s3.create_multipart_upload(Bucket=settings.s3_bucket, Key="left/by/a/crash")
    return s3, "s3"


def upload_left(handle: object, kind: str, settings: MediaSettings) -> bool:
    if kind == "local":
        assert isinstance(handle, Path)
        return handle.exists()
    answer = handle.list_multipart_uploads(Bucket=settings.s3_bucket)  # type: ignore[attr-defined]
    return bool(answer.get("Uploads"))


async def test_the_job_sweeps_stale_uploads_and_orphaned_directories(
    media_settings: SettingsFactory,
    scratch_database_url: str,
    coordinator_cluster: CoordinatorCluster,
) -> None:
    settings = media_settings(
        database_url=scratch_database_url,
        coordinator_endpoints=coordinator_cluster.endpoints,
        housekeeping_interval=0.2,
        stale_upload_age=1.0,
        orphan_dir_age=0.0,
    )
    async with serving("media", settings, register):
        handle, kind = await asyncio.to_thread(stale_upload, settings)
        orphan = settings.transcode_root / "orphan-of-another-run" / "out"
        orphan.mkdir(parents=True)
        deadline = time.monotonic() + 60
        while orphan.parent.exists() or await asyncio.to_thread(
            upload_left, handle, kind, settings
        ):
            assert time.monotonic() < deadline, "housekeeping did not sweep"
            await asyncio.sleep(0.1)


def test_housekeeping_settings_parse_endpoint_lists(backend: str) -> None:
    settings = MediaSettings(coordinator_endpoints="a:1, b:2,")  # type: ignore[arg-type]
    assert settings.coordinator_endpoints == ["a:1", "b:2"]
