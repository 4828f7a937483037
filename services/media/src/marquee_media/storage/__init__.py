"""Object storage behind one interface: local disk (embedded default) and S3."""

from marquee_media.storage.base import (
    ChecksumMismatch,
    ObjectChanged,
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
    "ObjectChanged",
    "ObjectExists",
    "ObjectMeta",
    "ObjectNotFound",
    "ObjectStore",
    "StorageDenied",
    "StorageError",
    "StorageUnavailable",
    "UploadSink",
]
