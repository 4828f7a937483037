"""What libvips says about an encoded image, off the event loop."""

from __future__ import annotations

from dataclasses import dataclass

import pyvips  # type: ignore[import-untyped]

# libvips loader name prefix -> (file extension, MIME type).
_LOADERS = {
    "jpegload": ("jpg", "image/jpeg"),
    "pngload": ("png", "image/png"),
    "webpload": ("webp", "image/webp"),
    "gifload": ("gif", "image/gif"),
    "heifload": ("avif", "image/avif"),
    "tiffload": ("tiff", "image/tiff"),
}


class NotAnImage(Exception):
    pass


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    extension: str
    content_type: str


def probe(data: bytes) -> ImageInfo:
    """Decode only the header of `data`; NotAnImage unless a known loader takes it."""
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
        loader = str(image.get("vips-loader"))
    except pyvips.Error:
        raise NotAnImage(
            "not an image in a supported format (JPEG, PNG, WebP, GIF, AVIF, TIFF)"
        ) from None
    kind = next((v for k, v in _LOADERS.items() if loader.startswith(k)), None)
    if kind is None:
        raise NotAnImage(f"image format {loader!r} is not accepted")
    return ImageInfo(int(image.width), int(image.height), *kind)
