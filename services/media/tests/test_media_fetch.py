"""FetchImage against a local HTTP server that misbehaves in every way it can (M-4, P-6)."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
import pyvips  # type: ignore[import-untyped]
from aiohttp import web
from conftest import SettingsFactory
from joserfc.jwk import OKPKey
from media_support import Client, sign

from marquee.media.v1 import media_pb2
from marquee_media.app import register
from marquee_media.fetch import address_allowed
from marquee_testing.inprocess import RunningService, serving

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)

JPEG = bytes(pyvips.Image.black(40, 30).write_to_buffer(".jpg"))


class ImageServer:
    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.release = asyncio.Event()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        routes = {
            "/ok.jpg": self.ok,
            "/stall": self.stall,
            "/endless": self.endless,
            "/declared-big": self.declared_big,
            "/loop": self.loop,
            "/hop1": self.hop1,
            "/missing": self.missing,
            "/flaky": self.flaky,
            "/broken": self.broken,
            "/text": self.text,
        }
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        return app

    def count(self, request: web.Request) -> None:
        self.hits[request.path] += 1

    async def ok(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.Response(body=JPEG, content_type="image/jpeg")

    async def stall(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(JPEG[:10])
        await self.release.wait()  # never more, until the test ends
        return response

    async def endless(self, request: web.Request) -> web.StreamResponse:
        self.count(request)
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        chunk = b"\xff" * 65536
        while not self.release.is_set():
            await response.write(chunk)
        return response

    async def declared_big(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.Response(body=b"x" * (2 * 1024 * 1024), content_type="image/jpeg")

    async def loop(self, request: web.Request) -> web.Response:
        self.count(request)
        raise web.HTTPFound("/loop")

    async def hop1(self, request: web.Request) -> web.Response:
        self.count(request)
        raise web.HTTPTemporaryRedirect(f"{self.url}/ok.jpg")

    async def missing(self, request: web.Request) -> web.Response:
        self.count(request)
        raise web.HTTPNotFound()

    async def flaky(self, request: web.Request) -> web.Response:
        self.count(request)
        if self.hits[request.path] <= 2:
            raise web.HTTPServiceUnavailable()
        return web.Response(body=JPEG, content_type="image/jpeg")

    async def broken(self, request: web.Request) -> web.Response:
        self.count(request)
        raise web.HTTPInternalServerError()

    async def text(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.Response(text="not an image")


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    server = ImageServer()
    runner = web.AppRunner(server.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    server.release.set()
    await runner.cleanup()


@pytest.fixture
async def fetching(media_settings: SettingsFactory) -> AsyncIterator[RunningService]:
    settings = media_settings(
        fetch_read_timeout=0.5,
        fetch_total_timeout=5,
        fetch_max_bytes=1024 * 1024,
        fetch_retries=2,
        fetch_backoff=0.01,
        fetch_max_redirects=3,
    )
    async with serving("media", settings, register) as running:
        yield running


@pytest.fixture
def client(fetching: RunningService, signing_key: OKPKey) -> Client:
    return Client(fetching.channel, sign(signing_key, "alice"))


async def fetch(client: Client, url: str, key: str = "") -> media_pb2.FetchImageResponse:
    request = media_pb2.FetchImageRequest(url=url, key=key)
    answer: media_pb2.FetchImageResponse = await client.stub.FetchImage(
        request, metadata=client.metadata, timeout=30
    )
    return answer


async def fails(client: Client, url: str, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fetch(client, url)
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


async def test_an_image_is_stored_under_its_content_hash(
    client: Client, images: ImageServer
) -> None:
    first = await fetch(client, f"{images.url}/ok.jpg")
    assert (first.width, first.height) == (40, 30)
    assert first.object.key == f"images/{first.object.sha256}.jpg"
    assert first.object.content_type == "image/jpeg"
    again = await fetch(client, f"{images.url}/ok.jpg")
    assert again.object.etag == first.object.etag  # a lookup, not a second write
    named = await fetch(client, f"{images.url}/hop1", key="avatars/alice.jpg")
    assert named.object.key == "avatars/alice.jpg"
    _, body = await client.get("avatars/alice.jpg")
    assert body == JPEG


async def test_a_stalling_server_is_unavailable_after_the_read_timeout(
    client: Client, images: ImageServer
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fails(client, f"{images.url}/stall", grpc.StatusCode.UNAVAILABLE)
    assert loop.time() - started < 10  # read timeout 0.5 s; generous for a loaded machine
    assert images.hits["/stall"] == 1  # a stalled read is not retried


async def test_oversized_answers_are_refused(client: Client, images: ImageServer) -> None:
    assert "larger than" in await fails(
        client, f"{images.url}/endless", grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "larger than" in await fails(
        client, f"{images.url}/declared-big", grpc.StatusCode.INVALID_ARGUMENT
    )


async def test_a_redirect_loop_stops_at_the_limit(client: Client, images: ImageServer) -> None:
    assert "redirects" in await fails(
        client, f"{images.url}/loop", grpc.StatusCode.INVALID_ARGUMENT
    )
    assert images.hits["/loop"] == 4  # the first request and 3 redirects


async def test_4xx_is_not_retried_and_5xx_is(client: Client, images: ImageServer) -> None:
    await fails(client, f"{images.url}/missing", grpc.StatusCode.INVALID_ARGUMENT)
    assert images.hits["/missing"] == 1
    answer = await fetch(client, f"{images.url}/flaky")
    assert answer.width == 40
    assert images.hits["/flaky"] == 3
    await fails(client, f"{images.url}/broken", grpc.StatusCode.UNAVAILABLE)
    assert images.hits["/broken"] == 3  # 1 + fetch_retries


async def test_bad_urls_and_non_images(client: Client, images: ImageServer) -> None:
    await fails(client, f"{images.url}/text", grpc.StatusCode.INVALID_ARGUMENT)
    for url in ["", "ftp://example.com/a.jpg", "not a url", "http://user:pw@example.com/a.jpg"]:
        await fails(client, url, grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fetch(client, f"{images.url}/ok.jpg", key="../x")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_private_addresses_are_refused_unless_allowed(
    media_settings: SettingsFactory, signing_key: OKPKey, images: ImageServer
) -> None:
    settings = media_settings(fetch_allow_private=False)
    async with serving("media", settings, register) as media:
        client = Client(media.channel, sign(signing_key, "alice"))
        port = images.url.rsplit(":", 1)[1]
        # A literal address, and a name that resolves to loopback: both refused
        # before any connection is made.
        for url in (f"{images.url}/ok.jpg", f"http://localhost:{port}/ok.jpg"):
            assert "public" in await fails(client, url, grpc.StatusCode.INVALID_ARGUMENT)
    assert images.hits["/ok.jpg"] == 0


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("172.16.5.4", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
        ("100.64.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
    ],
)
def test_address_policy(address: str, allowed: bool, backend: str) -> None:
    assert address_allowed(address) is allowed


async def test_a_refused_connection_is_retried_then_unavailable(client: Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once closed
    details = await fails(client, f"http://127.0.0.1:{port}/a.jpg", grpc.StatusCode.UNAVAILABLE)
    assert "cannot reach" in details
