"""Thumbnail: sizes from the allow-list, fits, formats, and stored results reused."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import pyvips  # type: ignore[import-untyped]
from media_support import Client

from marquee.media.v1 import media_pb2

PHOTO = bytes(pyvips.Image.xyz(1200, 900).extract_band(0).cast("uchar").write_to_buffer(".jpg"))


async def thumb(client: Client, **fields: object) -> media_pb2.ThumbnailResponse:
    answer: media_pb2.ThumbnailResponse = await client.stub.Thumbnail(
        media_pb2.ThumbnailRequest(**fields),  # type: ignore[arg-type]
        metadata=client.metadata,
        timeout=30,
    )
    return answer


async def test_fits_and_sizes(alice: Client) -> None:
    await alice.put("p/photo.jpg", [PHOTO], content_type="image/jpeg")
    cases = [
        ({"width": 256, "height": 256}, (256, 192)),
        ({"width": 128, "height": 128, "fit": media_pb2.THUMBNAIL_FIT_COVER}, (128, 128)),
        ({"width": 256, "height": 64, "fit": media_pb2.THUMBNAIL_FIT_FILL}, (256, 64)),
        ({"width": 320}, (320, 240)),
        ({"height": 480}, (640, 480)),
    ]
    for fields, size in cases:
        answer = await thumb(alice, key="p/photo.jpg", **fields)
        assert (answer.width, answer.height) == size, fields
        assert answer.object.key.startswith("thumbnails/")
        assert answer.object.content_type == "image/jpeg"
        _, body = await alice.get(answer.object.key)
        image = pyvips.Image.new_from_buffer(body, "")
        assert (image.width, image.height) == size


async def test_a_repeat_is_a_lookup(alice: Client) -> None:
    await alice.put("p/photo.jpg", [PHOTO], content_type="image/jpeg")
    first = await thumb(alice, key="p/photo.jpg", width=64, format=media_pb2.IMAGE_FORMAT_WEBP)
    again = await thumb(alice, key="p/photo.jpg", width=64, format=media_pb2.IMAGE_FORMAT_WEBP)
    assert again.object.key == first.object.key
    assert again.object.etag == first.object.etag
    assert again.object.modified_at == first.object.modified_at
    assert (again.width, again.height) == (64, 48)
    assert first.object.content_type == "image/webp"
    # The same image under another key shares the stored thumbnail (content hash).
    await alice.put("q/copy.jpg", [PHOTO], content_type="image/jpeg")
    copy = await thumb(alice, key="q/copy.jpg", width=64, format=media_pb2.IMAGE_FORMAT_WEBP)
    assert copy.object.key == first.object.key


async def test_inline_png(alice: Client) -> None:
    await alice.put("p/photo.jpg", [PHOTO], content_type="image/jpeg")
    answer = await thumb(
        alice,
        key="p/photo.jpg",
        width=32,
        height=32,
        inline=True,
        format=media_pb2.IMAGE_FORMAT_PNG,
    )
    assert answer.object.key == ""
    assert answer.object.content_type == "image/png"
    assert answer.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (answer.width, answer.height) == (32, 24)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 100}, "width"),  # not in the allow-list
        ({"width": 0, "height": 0}, "width"),
        ({"width": -64}, "width"),
        ({"width": 64, "quality": 101}, "quality"),
        ({"width": 64, "fit": 9}, "fit"),
        ({"width": 64, "format": 9}, "format"),
        ({"width": 64, "key": "../x"}, "key"),
    ],
)
async def test_bad_requests(alice: Client, fields: dict[str, object], field: str) -> None:
    fields = {"key": "p/photo.jpg", **fields}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await thumb(alice, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")


async def test_missing_and_non_image_sources(alice: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await thumb(alice, key="nothing/here.jpg", width=64)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await alice.put("p/text", [b"just text"], content_type="text/plain")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await thumb(alice, key="p/text", width=64)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_renders_run_off_the_loop_at_most_concurrency_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from marquee_media import thumbnails

    lock = threading.Lock()
    running, most = 0, 0
    loop_thread = threading.get_ident()
    release = threading.Event()

    def fake_render(*args: object) -> thumbnails.Rendered:
        nonlocal running, most
        assert threading.get_ident() != loop_thread  # a worker thread, not the loop
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1
        return thumbnails.Rendered(b"", 1, 1, "image/jpeg")

    monkeypatch.setattr(thumbnails, "_render", fake_render)
    renderer = thumbnails.ThumbnailRenderer(concurrency=2)
    jobs = [asyncio.create_task(renderer.render(b"", 64, 0, 0, 1, 80)) for _ in range(6)]
    deadline = asyncio.get_running_loop().time() + 10
    while most < 2:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*jobs)
    assert most == 2
