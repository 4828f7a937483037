"""FetchImage: download over HTTP(S) with aiohttp, safely (M-4, P-6).

Timeouts on connect, on each read and in total; a size limit enforced while
streaming (Content-Length is only an early refusal); redirects followed by
hand, at most `max_redirects`, each hop checked again; retries with backoff
on 5xx and connection failures only, never on 4xx. SSRF: the address a name
resolves to is checked (a resolver that refuses loopback, private, link-local
and other non-global addresses), and so is an address written in the URL,
which aiohttp never passes to the resolver.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from marquee_media.settings import MediaSettings

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchRefused(Exception):
    """The request or the answer is not acceptable: INVALID_ARGUMENT."""


class FetchUnavailable(Exception):
    """The remote could not be reached or kept failing: UNAVAILABLE."""


class AddressRefused(Exception):
    # Not an OSError on purpose: aiohttp would wrap that as a DNS failure.
    pass


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then refuses the whole answer if any address is not public."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for result in results:
                if not address_allowed(result["host"]):
                    raise AddressRefused(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Fetched:
    data: bytes
    sha256: str
    final_url: str


class ImageFetcher:
    def __init__(self, settings: MediaSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            s = self._settings
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(s.fetch_allow_private), limit=32
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=s.fetch_connect_timeout, sock_read=s.fetch_read_timeout
                ),
                auto_decompress=False,  # the size limit counts bytes on the wire
                headers={"User-Agent": "marquee-media/0.1", "Accept": "image/*"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str) -> Fetched:
        try:
            async with asyncio.timeout(self._settings.fetch_total_timeout):
                return await self._follow(check_url(url))
        except TimeoutError:
            raise FetchUnavailable(
                f"no complete answer within {self._settings.fetch_total_timeout} s"
            ) from None

    async def _follow(self, url: URL) -> Fetched:
        for _hop in range(self._settings.fetch_max_redirects + 1):
            self._check_literal(url)
            answer = await self._with_retries(url)
            if isinstance(answer, Fetched):
                return answer
            url = check_url(str(url.join(URL(answer))))
        raise FetchRefused(f"more than {self._settings.fetch_max_redirects} redirects")

    def _check_literal(self, url: URL) -> None:
        host = (url.host or "").strip("[]")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not self._settings.fetch_allow_private and not address_allowed(host):
            raise FetchRefused(f"address {host} is not public")

    async def _with_retries(self, url: URL) -> Fetched | str:
        """The image, or the Location of a redirect."""
        s = self._settings
        for attempt in range(s.fetch_retries + 1):
            last = attempt == s.fetch_retries
            try:
                return await self._once(url)
            except _Retryable as exc:
                if last:
                    raise FetchUnavailable(str(exc)) from None
            await asyncio.sleep(s.fetch_backoff * (2**attempt))
        raise AssertionError("unreachable")

    async def _once(self, url: URL) -> Fetched | str:
        limit = self._settings.fetch_max_bytes
        try:
            async with self._client().get(url, allow_redirects=False) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchRefused(f"HTTP {response.status} without a Location")
                    return location
                if response.status >= 500:
                    raise _Retryable(f"{url.host} answered HTTP {response.status}")
                if response.status >= 400 or response.status != 200:
                    raise FetchRefused(f"{url.host} answered HTTP {response.status}")
                if response.content_length is not None and response.content_length > limit:
                    raise FetchRefused(f"image larger than {limit} bytes")
                body = bytearray()
                digest = hashlib.sha256()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise FetchRefused(f"image larger than {limit} bytes")
                    digest.update(chunk)
                return Fetched(bytes(body), digest.hexdigest(), str(response.url))
        except AddressRefused as exc:
            raise FetchRefused(str(exc)) from None
        except (aiohttp.ServerTimeoutError, TimeoutError):
            # A stalled read is not retried: the total timeout would only be spent.
            raise FetchUnavailable(f"{url.host} timed out") from None
        except aiohttp.ClientConnectionError as exc:
            raise _Retryable(f"cannot reach {url.host}: {type(exc).__name__}") from None
        except aiohttp.ClientPayloadError as exc:
            raise _Retryable(f"{url.host} broke off the answer: {exc}") from None


class _Retryable(Exception):
    pass


def check_url(url: str) -> URL:
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise FetchRefused(f"not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchRefused("only absolute http(s) URLs are fetched")
    if parsed.user or parsed.password:
        raise FetchRefused("URLs with credentials are not fetched")
    return parsed
