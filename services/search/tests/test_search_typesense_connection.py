"""S-2: the Typesense URL, timeouts, retries on 5xx and connection errors only, the breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from pydantic import SecretStr, ValidationError
from search_support import FIELDS, expect_code
from typesense import exceptions as ts_errors

from marquee.search.v1 import search_pb2 as pb
from marquee.search.v1 import search_pb2_grpc
from marquee_localservers import TypesenseServer, free_port, server_data_dir
from marquee_localservers.errors import BackendUnavailable, ServerStartError
from marquee_search.app import register
from marquee_search.backend import EngineUnavailable
from marquee_search.settings import SearchSettings
from marquee_search.typesense_backend.breaker import CircuitBreaker, CircuitOpen
from marquee_search.typesense_backend.connection import Connection, Limits, Node, parse_url
from marquee_testing.backends import require_backend
from marquee_testing.inprocess import serving

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub as Stub

LIMITS = Limits(
    connect_timeout=0.5,
    read_timeout=2.0,
    retries=2,
    retry_backoff=0.0,
    breaker_threshold=3,
    breaker_reset_timeout=60.0,
)


@pytest.mark.parametrize(
    ("url", "node"),
    [
        ("http://127.0.0.1:8108", Node("http", "127.0.0.1", 8108, "")),
        ("https://search.example.com", Node("https", "search.example.com", 443, "")),
        (
            "http://search.example.com/typesense/",
            Node("http", "search.example.com", 80, "/typesense"),
        ),
        ("http://[::1]:9000", Node("http", "::1", 9000, "")),
    ],
)
def test_url_parsed_with_urllib(url: str, node: Node) -> None:
    assert parse_url(url) == node


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h:1",
        "127.0.0.1:8108",
        "http://",
        "http://user:pw@h:1",
        "http://h:1/?x=1",
        "http://h:99999",
        "http://h:port",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="Typesense URL"):
        parse_url(url)


def test_settings_refuse_a_bad_url_and_a_missing_key() -> None:
    with pytest.raises(ValidationError):
        SearchSettings(typesense_url="ftp://x")
    with pytest.raises(ValidationError, match="API_KEY"):
        SearchSettings(backend="typesense")
    SearchSettings(backend="typesense", typesense_api_key=SecretStr("k"))


def test_breaker_opens_then_lets_one_trial_through() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, reset_timeout=5.0, clock=lambda: now[0])
    breaker.before_call()
    breaker.failure()
    breaker.before_call()
    breaker.failure()
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    now[0] = 5.0
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one at a time
    breaker.failure()
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    now[0] = 10.0
    breaker.before_call()
    breaker.success()
    breaker.before_call()
    assert not breaker.is_open


@pytest.fixture
async def connection() -> AsyncIterator[Connection]:
    conn = Connection("http://127.0.0.1:1", "key", LIMITS)
    yield conn
    await conn.close()


class Counting:
    def __init__(self, *outcomes: BaseException | str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def test_retries_5xx_and_connection_errors(connection: Connection) -> None:
    op = Counting(ts_errors.ServerError(500, "boom"), httpx.ConnectError("refused"), "ok")
    assert await connection.call(op, idempotent=False) == "ok"
    assert op.calls == 3


async def test_never_retries_4xx(connection: Connection) -> None:
    op = Counting(ts_errors.RequestMalformed(400, "bad"), "ok")
    with pytest.raises(ts_errors.RequestMalformed):
        await connection.call(op, idempotent=True)
    assert op.calls == 1
    assert not connection.breaker.is_open


async def test_read_timeouts_retried_only_for_reads(connection: Connection) -> None:
    write = Counting(httpx.ReadTimeout("slow"), "ok")
    with pytest.raises(EngineUnavailable):
        await connection.call(write, idempotent=False)
    assert write.calls == 1, "a write that timed out may have been applied"
    read = Counting(httpx.ReadTimeout("slow"), "ok")
    assert await connection.call(read, idempotent=True) == "ok"
    assert read.calls == 2


async def test_open_breaker_fails_fast_without_calling(connection: Connection) -> None:
    failing = Counting(*[ts_errors.ServiceUnavailable(503, "down")] * 3)
    with pytest.raises(EngineUnavailable):
        await connection.call(failing, idempotent=True)
    assert failing.calls == 3
    assert connection.breaker.is_open
    untouched = Counting("ok")
    with pytest.raises(EngineUnavailable, match="circuit open"):
        await connection.call(untouched, idempotent=True)
    assert untouched.calls == 0


async def test_dead_typesense_answers_unavailable(tmp_path: Path) -> None:
    settings = SearchSettings(
        grpc_port=0,
        metrics_port=-1,
        backend="typesense",
        typesense_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        typesense_api_key=SecretStr("k"),
        typesense_retries=1,
        typesense_retry_backoff=0.0,
        typesense_breaker_threshold=2,
        typesense_breaker_reset_timeout=60.0,
    )
    async with serving("search", settings, register) as running:
        stub: Stub = search_pb2_grpc.SearchServiceStub(running.channel)
        request = pb.SearchRequest(collection="books", q="*")
        error = await expect_code(grpc.StatusCode.UNAVAILABLE, stub.Search(request, timeout=10))
        assert "Typesense unavailable" in (error.details() or "")
        error = await expect_code(grpc.StatusCode.UNAVAILABLE, stub.Search(request, timeout=10))
        assert "circuit open" in (error.details() or "")


async def test_typesense_stopped_then_back(tmp_path: Path) -> None:
    with server_data_dir("marquee-ts-restart-") as data_dir:
        server = TypesenseServer(data_dir)
        try:
            await asyncio.to_thread(server.start)
        except (BackendUnavailable, ServerStartError) as exc:
            require_backend("typesense", str(exc))
        try:
            settings = SearchSettings(
                grpc_port=0,
                metrics_port=-1,
                backend="typesense",
                typesense_url=server.url,
                typesense_api_key=SecretStr(server.api_key),
                typesense_retries=0,
                typesense_breaker_threshold=1,
                typesense_breaker_reset_timeout=0.2,
            )
            async with serving("search", settings, register) as running:
                stub: Stub = search_pb2_grpc.SearchServiceStub(running.channel)
                await stub.EnsureCollection(pb.EnsureCollectionRequest(name="b", fields=FIELDS))
                await asyncio.to_thread(server.stop)
                request = pb.GetCollectionRequest(name="b")
                await expect_code(grpc.StatusCode.UNAVAILABLE, stub.GetCollection(request))
                await asyncio.to_thread(server.start)
                codes = []
                async with asyncio.timeout(30):  # until the breaker's trial call succeeds
                    while True:
                        try:
                            reply = await stub.GetCollection(request)
                            break
                        except grpc.aio.AioRpcError as exc:
                            codes.append(exc.code())
                            await asyncio.sleep(0.05)
                assert set(codes) <= {grpc.StatusCode.UNAVAILABLE}
                assert reply.collection.name == "b", "the collection survived the restart"
        finally:
            await asyncio.to_thread(server.stop)
