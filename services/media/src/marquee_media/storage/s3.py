"""Objects on S3 through aioboto3 (M-1, M-2).

Uploads are multipart, part by part: at most one part (`part_bytes`) is held
in memory, and the upload is aborted on any error or cancellation, so nothing
half-written becomes visible. Errors are classified from the SDK's error codes
and HTTP status, never from message text. Every call is bounded twice: by
botocore's connect/read timeouts and by an overall asyncio deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aioboto3  # type: ignore[import-untyped]
import structlog
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

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

T = TypeVar("T")
_log = structlog.get_logger("marquee_media.s3")

# S3 error codes (ClientError.response["Error"]["Code"]). HEAD answers carry no
# body, so their code is the bare HTTP status ("404").
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)
_SHA_META = "marquee-sha256"  # x-amz-meta-marquee-sha256: our own checksum of the content


def classify(exc: BaseException) -> StorageError:
    """The storage error an SDK exception means."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFound("no such object")
        if code == "PreconditionFailed" or status == 412:
            return ObjectChanged("the object was replaced while being read")
        if code in _DENIED_CODES or status == 403:
            return StorageDenied(f"S3 refused access ({code or status})")
        return StorageUnavailable(f"S3 failed ({code or status})")
    if isinstance(exc, BotoCoreError | OSError | asyncio.TimeoutError):
        return StorageUnavailable(f"S3 unreachable ({type(exc).__name__})")
    raise exc


class S3Upload:
    """One upload: a single PUT when it fits in one part, else a multipart upload.

    The multipart upload is created lazily with the first full part, so small
    objects cost one request and carry their sha256 from the start.
    """

    def __init__(self, store: S3Store, key: str, content_type: str, metadata: Mapping[str, str],
                 expected_sha256: str) -> None:  # fmt: skip
        self._store = store
        self._key = key
        self._content_type = content_type or DEFAULT_CONTENT_TYPE
        self._metadata = dict(metadata)
        if expected_sha256:
            self._metadata[_SHA_META] = expected_sha256
        self._upload_id: str | None = None
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1
        # Parts on their way to S3; at most `upload_concurrency` at a time, so an
        # upload holds at most that many parts plus the one being filled.
        self._in_flight: set[asyncio.Task[None]] = set()
        self._hash = hashlib.sha256()
        self._size = 0
        self._finished = False

    async def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._store.part_bytes:
            part = bytes(self._buffer[: self._store.part_bytes])
            del self._buffer[: self._store.part_bytes]
            try:
                await self._send_part(part)
            except BaseException:
                await self.abort()
                raise

    async def _send_part(self, body: bytes) -> None:
        """Start uploading `body`, first waiting while `upload_concurrency` parts are in flight."""
        if self._upload_id is None:
            await self._create()
        while len(self._in_flight) >= self._store.upload_concurrency:
            done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            self._in_flight -= done
            for task in done:
                task.result()  # raises the part's error
        number = self._next_part
        self._next_part += 1
        self._in_flight.add(asyncio.create_task(self._upload_part(number, body)))

    async def _drain(self) -> None:
        # Parts still in flight stay in the set until they are done, so an abort
        # after a failed part cancels the others.
        while self._in_flight:
            done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_EXCEPTION)
            self._in_flight -= done
            for task in done:
                task.result()

    async def _cancel_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, set()
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)

    async def _create(self) -> None:
        if self._upload_id is None:
            answer = await self._store.call(
                "create_multipart_upload",
                Bucket=self._store.bucket,
                Key=self._key,
                ContentType=self._content_type,
                Metadata=self._metadata,
            )
            self._upload_id = str(answer["UploadId"])

    async def _upload_part(self, number: int, body: bytes) -> None:
        answer = await self._store.call(
            "upload_part",
            Bucket=self._store.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def complete(self, expected_sha256: str = "") -> ObjectMeta:
        digest = self._hash.hexdigest()
        try:
            if expected_sha256 and expected_sha256 != digest:
                raise ChecksumMismatch(f"content sha256 is {digest}, not {expected_sha256}")
            if self._upload_id is None:
                body, self._buffer = bytes(self._buffer), bytearray()
                await self._store.call(
                    "put_object",
                    Bucket=self._store.bucket,
                    Key=self._key,
                    Body=body,
                    ContentType=self._content_type,
                    Metadata={**self._metadata, _SHA_META: digest},
                )
            else:
                if self._buffer:  # the last part may be smaller than 5 MiB
                    body, self._buffer = bytes(self._buffer), bytearray()
                    await self._send_part(body)
                await self._drain()
                parts = sorted(self._parts, key=lambda part: int(part["PartNumber"]))
                await self._store.call(
                    "complete_multipart_upload",
                    Bucket=self._store.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                )
            self._finished = True
        except BaseException:
            await self.abort()
            raise
        if _SHA_META not in self._metadata:
            # The sha256 is known only now; record it by a server-side copy onto
            # itself (no bytes through us). Until then the object has no sha256.
            await self._store.call(
                "copy_object",
                Bucket=self._store.bucket,
                Key=self._key,
                CopySource={"Bucket": self._store.bucket, "Key": self._key},
                ContentType=self._content_type,
                Metadata={**self._metadata, _SHA_META: digest},
                MetadataDirective="REPLACE",
            )
        meta = await self._store.stat(self._key)
        if meta.size != self._size or meta.sha256 != digest:
            raise StorageUnavailable(
                f"S3 recorded {meta.size} bytes / sha256 {meta.sha256!r}, we sent {self._size}"
            )
        return meta

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        await asyncio.shield(self._cancel_in_flight())
        if self._upload_id is None:
            return
        # Shielded: a cancelled RPC must still abort. What an unreachable S3
        # leaves behind, the stale-upload sweep removes.
        with contextlib.suppress(StorageError):
            await asyncio.shield(
                self._store.call(
                    "abort_multipart_upload",
                    Bucket=self._store.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                )
            )


class S3Store:
    def __init__(
        self,
        *,
        endpoint: str | None,
        region: str,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        path_style: bool,
        timeout: float,
        part_bytes: int,
        upload_concurrency: int = 2,
    ) -> None:
        self.bucket = bucket
        self.part_bytes = part_bytes
        self.upload_concurrency = upload_concurrency
        self.timeout = timeout
        self._session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self._config = Config(
            connect_timeout=min(timeout, 5.0),
            read_timeout=timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path" if path_style else "auto"},
        )
        self._endpoint = endpoint
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self, *, create_bucket: bool = False) -> None:
        self._client = await self._stack.enter_async_context(
            self._session.client("s3", endpoint_url=self._endpoint, config=self._config)
        )
        if create_bucket:
            try:
                await self.call("head_bucket", Bucket=self.bucket)
            except ObjectNotFound:
                await self.call("create_bucket", Bucket=self.bucket)
            except StorageUnavailable as exc:
                # Serve anyway: calls answer UNAVAILABLE until S3 is back.
                _log.warning("s3 unreachable at start", bucket=self.bucket, error=str(exc))

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 call, bounded by `timeout`, its errors classified."""
        method = getattr(self._client, operation)
        return await self._bounded(method(**kwargs))

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout * 2):
                return await awaitable
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise classify(exc) from None

    async def begin_upload(
        self,
        key: str,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        overwrite: bool,
        expected_sha256: str = "",
    ) -> S3Upload:
        if not overwrite:
            # Not atomic with the completion: S3 has no portable "create only"
            # for multipart uploads. Two racing uploads: the last one wins.
            try:
                await self.stat(key)
            except ObjectNotFound:
                pass
            else:
                raise ObjectExists(f"object {key!r} exists")
        return S3Upload(self, key, content_type, metadata, expected_sha256)

    async def stat(self, key: str) -> ObjectMeta:
        answer = await self.call("head_object", Bucket=self.bucket, Key=key)
        return _meta(key, answer)

    async def read(
        self, key: str, offset: int, length: int, chunk_size: int, *, etag: str = ""
    ) -> AsyncIterator[bytes]:
        if length <= 0:
            return
        condition = {"IfMatch": f'"{etag}"'} if etag else {}
        answer = await self.call(
            "get_object",
            Bucket=self.bucket,
            Key=key,
            Range=f"bytes={offset}-{offset + length - 1}",
            **condition,
        )
        body = answer["Body"]
        try:
            left = length
            while left > 0:
                data = await self._bounded(body.read(min(chunk_size, left)))
                if not data:
                    raise StorageUnavailable("S3 ended the object early")
                left -= len(data)
                yield data
        finally:
            body.close()

    async def delete(self, key: str) -> bool:
        # S3 answers 204 whether or not the key existed: a HEAD says which.
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        await self.call("delete_object", Bucket=self.bucket, Key=key)
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    async def abort_stale_uploads(self, older_than: dt.timedelta) -> int:
        cutoff = dt.datetime.now(dt.UTC) - older_than
        answer = await self.call("list_multipart_uploads", Bucket=self.bucket)
        aborted = 0
        for upload in answer.get("Uploads", []):
            initiated = upload.get("Initiated")
            if isinstance(initiated, dt.datetime) and initiated < cutoff:
                with contextlib.suppress(ObjectNotFound):
                    await self.call(
                        "abort_multipart_upload",
                        Bucket=self.bucket,
                        Key=upload["Key"],
                        UploadId=upload["UploadId"],
                    )
                aborted += 1
        return aborted

    async def close(self) -> None:
        await self._stack.aclose()


def _meta(key: str, head: Mapping[str, Any]) -> ObjectMeta:
    user = dict(head.get("Metadata") or {})
    sha = user.pop(_SHA_META, "")
    modified = head.get("LastModified")
    return ObjectMeta(
        key=key,
        size=int(head.get("ContentLength", 0)),
        content_type=head.get("ContentType") or DEFAULT_CONTENT_TYPE,
        etag=str(head.get("ETag", "")).strip('"'),
        sha256=sha,
        metadata=user,
        modified_at=modified if isinstance(modified, dt.datetime) else dt.datetime.now(dt.UTC),
    )
