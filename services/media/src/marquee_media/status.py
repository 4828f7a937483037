"""Storage errors as gRPC statuses, and ObjectMeta as ObjectInfo."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.media.v1 import media_pb2
from marquee_media.storage import (
    ChecksumMismatch,
    ObjectChanged,
    ObjectExists,
    ObjectMeta,
    ObjectNotFound,
    StorageDenied,
    StorageError,
)
from marquee_platform.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)


class DataLoss(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.DATA_LOSS, message)


class Aborted(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.ABORTED, message)


class OutOfRange(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.OUT_OF_RANGE, message)


def invalid(what: str, violations: list[tuple[str, str]]) -> InvalidArgument:
    """INVALID_ARGUMENT whose message names every field, with the BadRequest details."""
    summary = "; ".join(f"{field}: {problem}" for field, problem in violations)
    return InvalidArgument(f"{what}: {summary}", violations)


def as_service_error(exc: StorageError, key: str) -> ServiceError:
    if isinstance(exc, ObjectNotFound):
        return NotFound(f"no object {key!r}")
    if isinstance(exc, ObjectExists):
        return AlreadyExists(f"{exc} (set overwrite to replace it)")
    if isinstance(exc, StorageDenied):
        return PermissionDenied(f"storage backend refused access: {exc}")
    if isinstance(exc, ChecksumMismatch):
        return DataLoss(f"upload discarded: {exc}")
    if isinstance(exc, ObjectChanged):
        return Aborted(f"{exc}; read {key!r} again")
    return Unavailable(f"storage backend unavailable: {exc}")


@contextlib.contextmanager
def storage_errors(key: str) -> Iterator[None]:
    try:
        yield
    except StorageError as exc:
        raise as_service_error(exc, key) from None


def object_info(meta: ObjectMeta, key: str | None = None) -> media_pb2.ObjectInfo:
    modified = Timestamp()
    modified.FromDatetime(meta.modified_at)
    return media_pb2.ObjectInfo(
        key=meta.key if key is None else key,
        size=meta.size,
        content_type=meta.content_type,
        etag=meta.etag,
        sha256=meta.sha256,
        metadata=dict(meta.metadata),
        modified_at=modified,
    )
