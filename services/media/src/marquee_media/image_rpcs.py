"""FetchImage and Thumbnail: fetched images and thumbnails are stored by content hash."""

from __future__ import annotations

import asyncio
import hashlib

from marquee.media.v1 import media_pb2
from marquee_media.fetch import FetchRefused, FetchUnavailable, ImageFetcher
from marquee_media.images import NotAnImage, probe
from marquee_media.keys import check_key
from marquee_media.objects import CHUNK_BYTES
from marquee_media.status import invalid, object_info, storage_errors
from marquee_media.storage import ObjectMeta, ObjectNotFound, ObjectStore
from marquee_media.thumbnails import (
    DEFAULT_QUALITY,
    FORMATS,
    RenderFailed,
    ThumbnailRenderer,
    output_format,
)
from marquee_platform.errors import InvalidArgument, Unavailable

_FITS = {"1": "contain", "2": "cover", "3": "fill"}


async def _put(store: ObjectStore, key: str, data: bytes, content_type: str,
               metadata: dict[str, str], overwrite: bool) -> ObjectMeta:  # fmt: skip
    sink = await store.begin_upload(key, content_type, metadata, overwrite=overwrite)
    try:
        for start in range(0, len(data), CHUNK_BYTES):
            await sink.write(data[start : start + CHUNK_BYTES])
        return await sink.complete()
    except BaseException:
        await asyncio.shield(sink.abort())
        raise


async def _existing(store: ObjectStore, key: str) -> ObjectMeta | None:
    try:
        return await store.stat(key)
    except ObjectNotFound:
        return None


async def fetch_image(
    store: ObjectStore, fetcher: ImageFetcher, request: media_pb2.FetchImageRequest
) -> media_pb2.FetchImageResponse:
    if request.key:
        check_key(request.key)
    if not request.url:
        raise InvalidArgument("url is required", [("url", "must not be empty")])
    try:
        fetched = await fetcher.fetch(request.url)
        info = await asyncio.to_thread(probe, fetched.data)
    except FetchRefused as exc:
        raise InvalidArgument(f"cannot fetch the image: {exc}", [("url", str(exc))]) from None
    except NotAnImage as exc:
        raise InvalidArgument(f"cannot store the image: {exc}", [("url", str(exc))]) from None
    except FetchUnavailable as exc:
        raise Unavailable(f"cannot fetch the image: {exc}") from None
    key = request.key or f"images/{fetched.sha256}.{info.extension}"
    dimensions = {"width": str(info.width), "height": str(info.height)}
    with storage_errors(key):
        meta = None if request.key else await _existing(store, key)
        if meta is None:
            meta = await _put(
                store, key, fetched.data, info.content_type, dimensions, request.overwrite
            )
    return media_pb2.FetchImageResponse(
        object=object_info(meta), width=info.width, height=info.height
    )


def check_thumbnail(request: media_pb2.ThumbnailRequest, sizes: list[int]) -> None:
    check_key(request.key)
    violations: list[tuple[str, str]] = []
    allowed = ", ".join(str(size) for size in sorted(sizes))
    for field, value in (("width", request.width), ("height", request.height)):
        if value < 0 or (value and value not in sizes):
            violations.append((field, f"must be 0 or one of {allowed}"))
    if not request.width and not request.height:
        violations.append(("width", "width or height must be > 0"))
    if not 0 <= request.quality <= 100:
        violations.append(("quality", "must be 0 (default) or 1..100"))
    if request.fit not in (0, 1, 2, 3):
        violations.append(("fit", "unknown fit"))
    if request.format != 0 and request.format not in FORMATS:
        violations.append(("format", "unknown format"))
    if violations:
        raise invalid("invalid thumbnail request", violations)


async def thumbnail(
    store: ObjectStore,
    renderer: ThumbnailRenderer,
    request: media_pb2.ThumbnailRequest,
    sizes: list[int],
    max_source_bytes: int,
) -> media_pb2.ThumbnailResponse:
    check_thumbnail(request, sizes)
    with storage_errors(request.key):
        source = await store.stat(request.key)
    if source.size > max_source_bytes:
        raise InvalidArgument(
            "source image too large", [("key", f"thumbnails of at most {max_source_bytes} bytes")]
        )
    fmt = output_format(request.format, source.content_type)
    quality = request.quality or DEFAULT_QUALITY
    fit = _FITS.get(str(request.fit), "contain")
    extension = FORMATS[fmt][0]
    # The source's content hash names the result: a repeat is one lookup.
    version = source.sha256 or source.etag
    derived = f"thumbnails/{version}/{request.width}x{request.height}-{fit}-q{quality}.{extension}"
    if not request.inline:
        with storage_errors(derived):
            done = await _existing(store, derived)
        if done is not None:
            return media_pb2.ThumbnailResponse(
                object=object_info(done),
                width=int(done.metadata.get("width", 0)),
                height=int(done.metadata.get("height", 0)),
            )
    with storage_errors(request.key):
        data = b"".join([c async for c in store.read(request.key, 0, source.size, CHUNK_BYTES)])
    try:
        image = await asyncio.to_thread(probe, data)
        del image
        rendered = await renderer.render(
            data, request.width, request.height, request.fit, fmt, quality
        )
    except (NotAnImage, RenderFailed) as exc:
        raise InvalidArgument(
            f"{request.key!r} is not a usable image: {exc}", [("key", str(exc))]
        ) from None
    dimensions = {"width": str(rendered.width), "height": str(rendered.height)}
    if request.inline:
        sha = hashlib.sha256(rendered.data).hexdigest()
        meta = ObjectMeta("", len(rendered.data), rendered.content_type, sha[:32], sha, dimensions)
        return media_pb2.ThumbnailResponse(
            object=object_info(meta, key=""),
            data=rendered.data,
            width=rendered.width,
            height=rendered.height,
        )
    with storage_errors(derived):
        # Overwrite: two racing renders of the same thumbnail write the same bytes.
        stored = await _put(store, derived, rendered.data, rendered.content_type, dimensions, True)
    return media_pb2.ThumbnailResponse(
        object=object_info(stored), width=rendered.width, height=rendered.height
    )
