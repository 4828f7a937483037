"""The storage interface both backends implement, and the errors they raise.

Backends raise only these errors, classified from the SDK's or the OS's error
codes; the servicer maps them to gRPC statuses in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

DEFAULT_CONTENT_TYPE = "application/octet-stream"


class StorageError(Exception):
    """Base of every storage failure."""


class ObjectNotFound(StorageError):
    pass


class ObjectExists(StorageError):
    pass


class StorageDenied(StorageError):
    """The backend refused our credentials or permissions."""


class StorageUnavailable(StorageError):
    """The backend is down, slow beyond its deadline, or failed on its side."""


class ChecksumMismatch(StorageError):
    pass


class ObjectChanged(StorageError):
    """The object was replaced while it was being read."""


@dataclass(frozen=True)
class ObjectMeta:
    key: str
    size: int
    content_type: str
    etag: str
    sha256: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    modified_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class UploadSink(Protocol):
    """An upload in progress: nothing is visible until `complete` returns."""

    async def write(self, data: bytes) -> None: ...

    async def complete(self, expected_sha256: str = "") -> ObjectMeta:
        """Publish the object; ChecksumMismatch (and nothing published) on a wrong sha256."""
        ...

    async def abort(self) -> None:
        """Discard everything written; safe to call more than once or after a failure."""
        ...


class ObjectStore(Protocol):
    async def begin_upload(
        self,
        key: str,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        overwrite: bool,
        expected_sha256: str = "",
    ) -> UploadSink:
        """ObjectExists up front when the key exists and overwrite is false."""
        ...

    async def stat(self, key: str) -> ObjectMeta: ...

    def read(
        self, key: str, offset: int, length: int, chunk_size: int, *, etag: str = ""
    ) -> AsyncIterator[bytes]:
        """`length` bytes from `offset` (the caller clipped the range with stat).

        With `etag` (from stat), ObjectChanged if the object is no longer that version.
        """
        ...

    async def delete(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """The object's file when the backend keeps it on this disk (ffmpeg reads it directly)."""
        ...

    async def abort_stale_uploads(self, older_than: dt.timedelta) -> int:
        """Abort uploads left behind (e.g. by a kill -9); how many were removed."""
        ...

    async def close(self) -> None: ...
