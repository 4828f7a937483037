"""Object storage behind one interface: local disk (embedded default) and S3."""

from marquee_media.storage.base import (
    ChecksumMismatch,
    ObjectExists,
    ObjectMeta,
    ObjectNotFound,
    ObjectStore,
    StorageDenied,
    StorageError,
    StorageUnavailable,
    UploadSink,
)

__all__ = [
    "ChecksumMismatch",
    "ObjectExists",
    "ObjectMeta",
    "ObjectNotFound",
    "ObjectStore",
    "StorageDenied",
    "StorageError",
    "StorageUnavailable",
    "UploadSink",
]
