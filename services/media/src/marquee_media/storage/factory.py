"""The store the settings name."""

from __future__ import annotations

from marquee_media.settings import MediaSettings
from marquee_media.storage.base import ObjectStore
from marquee_media.storage.local import LocalStore


async def open_store(settings: MediaSettings, *, create_bucket: bool = True) -> ObjectStore:
    if settings.storage == "local":
        return LocalStore(settings.storage_dir)
    # Imported only for S3: aioboto3 and botocore are ~0.35 s of start-up that a
    # service on local storage never uses.
    from marquee_media.storage.s3 import S3Store

    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    store = S3Store(
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        bucket=settings.s3_bucket,
        access_key=settings.s3_access_key,
        secret_key=secret,
        path_style=settings.s3_path_style,
        timeout=settings.s3_timeout,
        part_bytes=settings.upload_part_bytes,
        upload_concurrency=settings.upload_concurrency,
    )
    await store.open(create_bucket=create_bucket)
    return store
