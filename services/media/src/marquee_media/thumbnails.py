"""Rendering thumbnails with libvips on worker threads, a bounded number at a time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pyvips  # type: ignore[import-untyped]

from marquee.media.v1 import media_pb2

# libvips takes at most 10 million pixels per side: a "free" dimension.
_UNBOUNDED = 10_000_000
DEFAULT_QUALITY = 80

FORMATS: dict[int, tuple[str, str]] = {
    media_pb2.IMAGE_FORMAT_JPEG: ("jpg", "image/jpeg"),
    media_pb2.IMAGE_FORMAT_PNG: ("png", "image/png"),
    media_pb2.IMAGE_FORMAT_WEBP: ("webp", "image/webp"),
    media_pb2.IMAGE_FORMAT_AVIF: ("avif", "image/avif"),
}
_BY_CONTENT_TYPE: dict[str, int] = {content_type: fmt for fmt, (_, content_type) in FORMATS.items()}


def output_format(requested: int, source_content_type: str) -> int:
    if requested != media_pb2.IMAGE_FORMAT_UNSPECIFIED:
        return requested
    return _BY_CONTENT_TYPE.get(source_content_type, media_pb2.IMAGE_FORMAT_JPEG)


@dataclass(frozen=True)
class Rendered:
    data: bytes
    width: int
    height: int
    content_type: str


class ThumbnailRenderer:
    def __init__(self, concurrency: int) -> None:
        # Each render holds a decoded image: the semaphore bounds memory and CPU.
        self._slots = asyncio.Semaphore(concurrency)

    async def render(
        self, source: bytes, width: int, height: int, fit: int, fmt: int, quality: int
    ) -> Rendered:
        async with self._slots:
            return await asyncio.to_thread(_render, source, width, height, fit, fmt, quality)


class RenderFailed(Exception):
    pass


def _render(source: bytes, width: int, height: int, fit: int, fmt: int, quality: int) -> Rendered:
    try:
        return _render_unchecked(source, width, height, fit, fmt, quality)
    except pyvips.Error as exc:
        raise RenderFailed(str(exc).splitlines()[0]) from None


def _render_unchecked(
    source: bytes, width: int, height: int, fit: int, fmt: int, quality: int
) -> Rendered:
    options: dict[str, object] = {"height": height or _UNBOUNDED}
    if width and height:
        if fit == media_pb2.THUMBNAIL_FIT_COVER:
            options["crop"] = "centre"
        elif fit == media_pb2.THUMBNAIL_FIT_FILL:
            options["size"] = "force"
    image = pyvips.Image.thumbnail_buffer(source, width or _UNBOUNDED, **options)
    extension, content_type = FORMATS[fmt]
    if image.hasalpha() and fmt == media_pb2.IMAGE_FORMAT_JPEG:
        image = image.flatten(background=[255, 255, 255])
    suffix = f".{extension}" if fmt == media_pb2.IMAGE_FORMAT_PNG else f".{extension}[Q={quality}]"
    data = image.write_to_buffer(suffix)
    return Rendered(bytes(data), int(image.width), int(image.height), content_type)


def release_libvips(*, shutdown: bool) -> None:
    """Drop libvips' operation cache; with `shutdown`, end libvips itself (M-6).

    libvips cannot start again in a process once shut down, so only a process
    that ends with the server shuts it down (tests serving in-process do not).
    """
    pyvips.cache_set_max(0)
    if shutdown:
        pyvips.shutdown()
