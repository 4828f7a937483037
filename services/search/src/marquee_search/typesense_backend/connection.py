"""Reaching Typesense: the URL parsed with urllib.parse, timeouts, retries and the breaker.

Retried: connection failures and 5xx answers (and, for reads only, a read
timeout, since a write that timed out may have been applied). Never retried:
4xx answers, which would fail the same way again. Every failure that reaches
the breaker counts; once open, calls fail at once with EngineUnavailable
instead of each waiting for its timeouts.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import typesense
from typesense import exceptions as ts_errors

from marquee_search.backend import EngineUnavailable
from marquee_search.typesense_backend.breaker import CircuitBreaker, CircuitOpen

T = TypeVar("T")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SERVER_ERRORS = (ts_errors.ServerError, ts_errors.ServiceUnavailable, ts_errors.HTTPStatus0Error)
# The request may not have reached the server: safe to send again.
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The server may have acted on it: retried for reads only.
_READ_ERRORS = (
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
    ts_errors.Timeout,
)


@dataclass(frozen=True)
class Node:
    protocol: str
    host: str
    port: int
    path: str


def parse_url(url: str) -> Node:
    """The node of a `http(s)://host[:port][/path]` URL; ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"Typesense URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"Typesense URL has no host: {url!r}")
    if parts.username or parts.password:
        raise ValueError("Typesense URL must not carry credentials: set the API key setting")
    if parts.query or parts.fragment:
        raise ValueError(f"Typesense URL must not have a query or fragment: {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:  # a port out of range or not a number
        raise ValueError(f"Typesense URL has a bad port: {url!r}") from exc
    return Node(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


@dataclass(frozen=True)
class Limits:
    connect_timeout: float
    read_timeout: float
    retries: int
    retry_backoff: float
    breaker_threshold: int
    breaker_reset_timeout: float


class Connection:
    def __init__(self, url: str, api_key: str, limits: Limits) -> None:
        node = parse_url(url)
        self.limits = limits
        timeout = httpx.Timeout(
            limits.read_timeout, connect=limits.connect_timeout, pool=limits.connect_timeout
        )
        self._http = httpx.AsyncClient(timeout=timeout)
        with warnings.catch_warnings():
            # The 2.x client warns about v30+ APIs it builds eagerly and we never call.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.client = self._make_client(node, api_key, limits)
        self.breaker = CircuitBreaker(limits.breaker_threshold, limits.breaker_reset_timeout)

    def _make_client(self, node: Node, api_key: str, limits: Limits) -> typesense.AsyncClient:
        return typesense.AsyncClient(
            {
                "api_key": api_key,
                "nodes": [
                    {
                        "protocol": node.protocol,
                        "host": node.host,
                        "port": node.port,
                        "path": node.path,
                    }
                ],
                # Retries are ours (below): the client's would also repeat writes that timed out.
                "num_retries": 0,
                "connection_timeout_seconds": limits.read_timeout,
            },
            http_client=self._http,
        )

    async def call(self, operation: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        """Run one Typesense request with retries under the breaker; 4xx errors pass through."""
        retryable: tuple[type[BaseException], ...] = _SERVER_ERRORS + _CONNECT_ERRORS
        if idempotent:
            retryable += _READ_ERRORS
        last: BaseException | None = None
        for attempt in range(self.limits.retries + 1):
            try:
                self.breaker.before_call()
            except CircuitOpen as exc:
                raise EngineUnavailable(
                    f"Typesense unavailable: {exc} ({last or 'earlier'})"
                ) from exc
            try:
                result = await operation()
            except retryable as exc:
                self.breaker.failure()
                last = exc
                if attempt < self.limits.retries:
                    await asyncio.sleep(self.limits.retry_backoff * (2**attempt))
                continue
            except (*_READ_ERRORS, httpx.TransportError) as exc:
                self.breaker.failure()
                raise EngineUnavailable(f"Typesense unavailable: {_describe(exc)}") from exc
            except ts_errors.TypesenseClientError:
                self.breaker.success()  # the server answered: it is up
                raise
            self.breaker.success()
            return result
        raise EngineUnavailable(f"Typesense unavailable: {_describe(last)}")

    async def close(self) -> None:
        await self._http.aclose()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no attempt made"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
