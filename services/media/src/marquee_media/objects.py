"""Upload, Download, Stat and Delete on the configured store."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator

from marquee.media.v1 import media_pb2
from marquee_media.keys import check_key
from marquee_media.status import OutOfRange, invalid, object_info, storage_errors
from marquee_media.storage import ObjectStore
from marquee_platform.errors import InvalidArgument

CHUNK_BYTES = 1024 * 1024  # the contract's chunk limit, both directions
_SHA256 = re.compile(r"[0-9a-f]{64}")
_META_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
_MAX_METADATA_BYTES = 2048  # S3 caps user metadata at 2 KB


def check_header(header: media_pb2.UploadHeader, max_bytes: int) -> None:
    check_key(header.key, "header.key")
    violations: list[tuple[str, str]] = []
    if header.sha256 and not _SHA256.fullmatch(header.sha256):
        violations.append(("header.sha256", "must be 64 lowercase hex digits"))
    if header.size_hint < 0:
        violations.append(("header.size_hint", "must not be negative"))
    elif header.size_hint > max_bytes:
        violations.append(("header.size_hint", f"objects are limited to {max_bytes} bytes"))
    if len(header.content_type) > 255 or any(ord(c) < 0x20 for c in header.content_type):
        violations.append(("header.content_type", "must be a MIME type"))
    size = 0
    for name, value in header.metadata.items():
        size += len(name) + len(value.encode())
        if not _META_KEY.fullmatch(name):
            violations.append((f"header.metadata[{name!r}]", "keys are lowercase ASCII"))
        if not value.isprintable() or not value.isascii():
            violations.append((f"header.metadata[{name!r}]", "values are printable ASCII"))
    if size > _MAX_METADATA_BYTES:
        violations.append(("header.metadata", f"at most {_MAX_METADATA_BYTES} bytes in all"))
    if violations:
        raise invalid("invalid upload header", violations)


async def upload(
    store: ObjectStore, requests: AsyncIterable[media_pb2.UploadRequest], max_bytes: int
) -> media_pb2.UploadResponse:
    messages = aiter(requests)
    first = await anext(messages, None)
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument(
            "the first Upload message must be a header", [("header", "required first")]
        )
    header = first.header
    check_header(header, max_bytes)
    key = header.key
    with storage_errors(key):
        sink = await store.begin_upload(
            key,
            header.content_type,
            header.metadata,
            overwrite=header.overwrite,
            expected_sha256=header.sha256,
        )
        try:
            size = 0
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        "only the first Upload message may be a header", [("chunk", "expected")]
                    )
                chunk = message.chunk
                if len(chunk) > CHUNK_BYTES:
                    raise InvalidArgument("chunk too large", [("chunk", "at most 1 MiB")])
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidArgument(
                        "object too large", [("chunk", f"objects are limited to {max_bytes} bytes")]
                    )
                await sink.write(chunk)
            meta = await sink.complete(header.sha256)
        except BaseException:
            # Errors, cancellation (client gone) and deadlines alike: nothing
            # half-written stays, and no part is left to pay for.
            await asyncio.shield(sink.abort())
            raise
    return media_pb2.UploadResponse(object=object_info(meta))


async def download(
    store: ObjectStore, request: media_pb2.DownloadRequest
) -> AsyncIterator[media_pb2.DownloadResponse]:
    check_key(request.key)
    if request.offset < 0 or request.length < 0:
        field = "offset" if request.offset < 0 else "length"
        raise InvalidArgument(f"{field} must not be negative", [(field, "must be >= 0")])
    with storage_errors(request.key):
        meta = await store.stat(request.key)
        if request.offset > meta.size or (request.offset == meta.size and meta.size > 0):
            raise OutOfRange(f"offset {request.offset} is beyond the end ({meta.size} bytes)")
        available = meta.size - request.offset
        length = min(request.length, available) if request.length else available
        yield media_pb2.DownloadResponse(
            header=media_pb2.DownloadHeader(
                object=object_info(meta), offset=request.offset, length=length
            )
        )
        reading = store.read(request.key, request.offset, length, CHUNK_BYTES, etag=meta.etag)
        async for chunk in reading:
            yield media_pb2.DownloadResponse(chunk=chunk)


async def stat(store: ObjectStore, request: media_pb2.StatRequest) -> media_pb2.StatResponse:
    check_key(request.key)
    with storage_errors(request.key):
        return media_pb2.StatResponse(object=object_info(await store.stat(request.key)))


async def delete(store: ObjectStore, request: media_pb2.DeleteRequest) -> media_pb2.DeleteResponse:
    check_key(request.key)
    with storage_errors(request.key):
        return media_pb2.DeleteResponse(deleted=await store.delete(request.key))
