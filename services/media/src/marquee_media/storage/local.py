"""Objects on local disk, the embedded default backend (M-3).

Each object is one file: the content, then a JSON trailer (content type,
sha256, metadata) and the trailer's length in 8 bytes. One file means one
atomic publish: an upload is written to `uploads/`, fsynced, then linked into
`objects/` (link fails if the key exists, rename replaces it), so a reader
never sees half an object and a kill -9 leaves only an upload file that
`abort_stale_uploads` removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO

from marquee_media.storage.base import (
    DEFAULT_CONTENT_TYPE,
    ChecksumMismatch,
    ObjectChanged,
    ObjectExists,
    ObjectMeta,
    ObjectNotFound,
    StorageDenied,
    StorageError,
    StorageUnavailable,
)

_TRAILER_LEN = struct.Struct(">Q")


def _classify(exc: OSError) -> StorageError:
    # errno, not message text.
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ObjectNotFound("no such object")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageDenied(f"storage refused access ({errno.errorcode.get(exc.errno or 0)})")
    return StorageUnavailable(f"storage failed ({errno.errorcode.get(exc.errno or 0, exc.errno)})")


class LocalUpload:
    def __init__(self, store: LocalStore, key: str, content_type: str, metadata: Mapping[str, str],
                 overwrite: bool) -> None:  # fmt: skip
        self._store = store
        self._key = key
        self._content_type = content_type or DEFAULT_CONTENT_TYPE
        self._metadata = dict(metadata)
        self._overwrite = overwrite
        self._tmp = store.uploads / f"{uuid.uuid4().hex}.part"
        self._file: IO[bytes] | None = self._tmp.open("xb")
        self._hash = hashlib.sha256()
        self._size = 0

    async def write(self, data: bytes) -> None:
        assert self._file is not None, "upload already finished"
        self._hash.update(data)
        self._size += len(data)
        await asyncio.to_thread(self._file.write, data)

    async def complete(self, expected_sha256: str = "") -> ObjectMeta:
        digest = self._hash.hexdigest()
        if expected_sha256 and expected_sha256 != digest:
            await self.abort()
            raise ChecksumMismatch(f"content sha256 is {digest}, not {expected_sha256}")
        trailer = json.dumps(
            {"content_type": self._content_type, "sha256": digest, "metadata": self._metadata}
        ).encode()
        try:
            await asyncio.to_thread(self._finish, trailer)
        except BaseException:
            await self.abort()
            raise
        return await self._store.stat(self._key)

    def _finish(self, trailer: bytes) -> None:
        assert self._file is not None
        self._file.write(trailer + _TRAILER_LEN.pack(len(trailer)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        target = self._store.path_of(self._key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if self._overwrite:
                os.replace(self._tmp, target)
            else:
                os.link(self._tmp, target)
                self._tmp.unlink()
        except FileExistsError:
            raise ObjectExists(f"object {self._key!r} exists") from None
        except (NotADirectoryError, IsADirectoryError):
            raise ObjectExists(f"key {self._key!r} conflicts with an existing object") from None
        except OSError as exc:
            raise _classify(exc) from None

    async def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.objects = self.root / "objects"
        self.uploads = self.root / "uploads"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        return self.objects / key  # the key was validated: no "..", no leading "/"

    async def begin_upload(
        self,
        key: str,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        overwrite: bool,
        expected_sha256: str = "",
    ) -> LocalUpload:
        if not overwrite and self.path_of(key).is_file():
            raise ObjectExists(f"object {key!r} exists")
        try:
            return LocalUpload(self, key, content_type, metadata, overwrite)
        except OSError as exc:
            raise _classify(exc) from None

    async def stat(self, key: str) -> ObjectMeta:
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> ObjectMeta:
        path = self.path_of(key)
        try:
            with path.open("rb") as file:
                return _read_meta(key, file)
        except IsADirectoryError:
            raise ObjectNotFound("no such object") from None
        except OSError as exc:
            raise _classify(exc) from None

    async def read(
        self, key: str, offset: int, length: int, chunk_size: int, *, etag: str = ""
    ) -> AsyncIterator[bytes]:
        try:
            file = await asyncio.to_thread(self.path_of(key).open, "rb")
        except OSError as exc:
            raise _classify(exc) from None
        try:
            # An open file keeps its version even if the key is replaced; only a
            # replacement between stat and open is caught here.
            if etag and (await asyncio.to_thread(_read_meta, key, file)).etag != etag:
                raise ObjectChanged("the object was replaced while being read")
            await asyncio.to_thread(file.seek, offset)
            left = length
            while left > 0:
                data = await asyncio.to_thread(file.read, min(chunk_size, left))
                if not data:
                    raise StorageUnavailable("object shorter than recorded")
                left -= len(data)
                yield data
        finally:
            file.close()

    async def delete(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self.path_of(key).unlink)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except OSError as exc:
            raise _classify(exc) from None
        return True

    def local_path(self, key: str) -> Path | None:
        return None  # the file carries a trailer: ffmpeg must get a plain copy

    async def abort_stale_uploads(self, older_than: dt.timedelta) -> int:
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for part in self.uploads.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
        return removed

    async def close(self) -> None:
        pass


def _read_meta(key: str, file: IO[bytes]) -> ObjectMeta:
    stat = os.fstat(file.fileno())
    if stat.st_size < _TRAILER_LEN.size:
        raise StorageUnavailable(f"object {key!r} is damaged (no trailer)")
    file.seek(stat.st_size - _TRAILER_LEN.size)
    (trailer_len,) = _TRAILER_LEN.unpack(file.read(_TRAILER_LEN.size))
    size = stat.st_size - _TRAILER_LEN.size - trailer_len
    if size < 0:
        raise StorageUnavailable(f"object {key!r} is damaged (bad trailer)")
    file.seek(size)
    trailer = json.loads(file.read(trailer_len))
    return ObjectMeta(
        key=key,
        size=size,
        content_type=trailer["content_type"],
        etag=f"{trailer['sha256'][:32]}-{stat.st_mtime_ns:x}",
        sha256=trailer["sha256"],
        metadata=trailer["metadata"],
        modified_at=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
    )
