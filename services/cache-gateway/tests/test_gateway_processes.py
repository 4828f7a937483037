"""Two gateway processes on one private Redis, plus an outside redis-py writer (C-1..C-7).

The module shares one Redis and two gateways; the kill/restart test runs last
and leaves Redis running again.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from time import monotonic

import grpc
import pytest
import redis.asyncio as aioredis
from gateway_process import GatewayProcess
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2

from marquee.cache.v1 import cache_pb2 as pb
from marquee_cache_gateway.health import SERVICE_NAME
from marquee_localservers import BackendUnavailable, RedisServer, ServerStartError
from marquee_testing.backends import require_backend

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis: the last test kills it. Empty after a restart (no persistence)."""
    server = RedisServer(tmp_path_factory.mktemp("gw-redis"), persistent=False)
    try:
        server.start()
    except (BackendUnavailable, ServerStartError) as exc:
        require_backend("redis", str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def gateways(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[GatewayProcess]]:
    logs = tmp_path_factory.mktemp("gw-logs")
    procs = [GatewayProcess(redis_server.url, logs, name) for name in ("a", "b")]
    try:
        for gw in procs:
            await gw.wait_status(SERVICE_NAME, SERVING)
        yield procs
    finally:
        codes = [await gw.stop() for gw in procs]
    assert codes == [0, 0], "a gateway did not stop cleanly on SIGTERM"


@pytest.fixture
async def writer(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@dataclass
class Watch:
    """A WatchInvalidations stream read by a task that timestamps each event on arrival."""

    gateway: GatewayProcess
    events: asyncio.Queue[tuple[float, pb.WatchInvalidationsResponse]] = field(
        default_factory=asyncio.Queue
    )

    async def pump(self, prefixes: list[str]) -> None:
        call = self.gateway.stub.WatchInvalidations(pb.WatchInvalidationsRequest(prefixes=prefixes))
        async for event in call:
            await self.events.put((monotonic(), event))

    async def next(
        self, kind: str, timeout: float = 5.0
    ) -> tuple[float, pb.WatchInvalidationsResponse]:
        async with asyncio.timeout(timeout):
            while True:
                at, event = await self.events.get()
                if event.WhichOneof("event") == kind:
                    return at, event


@pytest.fixture
async def watches(
    gateways: list[GatewayProcess], request: pytest.FixtureRequest
) -> AsyncIterator[list[Watch]]:
    prefix = prefix_of(request)
    made = [Watch(gw) for gw in gateways]
    tasks = [asyncio.create_task(w.pump([prefix])) for w in made]
    for w in made:
        _, first = await w.next("flushed")
        assert first.flushed.reason == pb.FLUSH_REASON_STREAM_STARTED
    yield made
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def prefix_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.name)[:40] + ":"


async def get(gw: GatewayProcess, key: str) -> pb.GetResponse:
    return await gw.stub.Get(pb.GetRequest(key=key), timeout=2)


async def test_outside_write_is_never_served_stale_after_its_invalidation(
    gateways: list[GatewayProcess], watches: list[Watch], writer: aioredis.Redis,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    key = prefix_of(request) + "shared"
    await writer.set(key, b"v0")
    delays: list[float] = []
    for i in range(1, 101):
        for gw in gateways:
            await get(gw, key)
            held = await get(gw, key)
            assert held.layer == pb.CACHE_LAYER_L1, "each gateway holds it in L1"
        sent = monotonic()
        await writer.set(key, f"v{i}")
        for watch in watches:
            at, event = await watch.next("invalidated")
            assert list(event.invalidated.keys) == [key]
            delays.append(at - sent)
        for gw in gateways:
            # The invalidation has arrived: no instance may serve the old value.
            assert (await get(gw, key)).value == f"v{i}".encode()
    delays.sort()
    p50, p99 = delays[len(delays) // 2] * 1e3, delays[int(len(delays) * 0.99)] * 1e3
    print(
        f"\ninvalidation delay through the gateways (outside write sent -> event received "
        f"on WatchInvalidations): p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(delays)}"
    )
    # Every event arrived (the checks above); how fast is a benchmark figure.
    assert delays


async def test_flushall_empties_both_l1s(
    gateways: list[GatewayProcess], watches: list[Watch], writer: aioredis.Redis,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    key = prefix_of(request) + "k"
    await writer.set(key, b"v")
    for gw in gateways:
        await get(gw, key)
        assert (await get(gw, key)).layer == pb.CACHE_LAYER_L1
    await writer.flushall()
    for watch in watches:
        _, event = await watch.next("flushed")
        assert event.flushed.reason == pb.FLUSH_REASON_SERVER_FLUSH
    for gw in gateways:
        assert not (await get(gw, key)).found


async def test_expiry_is_honoured_by_both_l1s(
    gateways: list[GatewayProcess], request: pytest.FixtureRequest
) -> None:
    key = prefix_of(request) + "k"
    ttl = Duration()
    ttl.FromMilliseconds(300)
    await gateways[0].stub.Set(pb.SetRequest(key=key, value=b"v", ttl=ttl))
    for gw in gateways:
        await get(gw, key)
        assert (await get(gw, key)).layer == pb.CACHE_LAYER_L1
    await asyncio.sleep(0.32)
    for gw in gateways:
        assert not (await get(gw, key)).found, "no L1 entry outlives the key's TTL"


async def test_prefix_delete_through_one_clears_the_other(
    gateways: list[GatewayProcess], watches: list[Watch], writer: aioredis.Redis,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    prefix = prefix_of(request)
    keys = [f"{prefix}{i}" for i in range(50)]
    await writer.mset(dict.fromkeys(keys, b"v"))
    a, b = gateways
    for gw in gateways:
        await gw.stub.GetMany(pb.GetManyRequest(keys=keys))
    held = await b.stub.GetMany(pb.GetManyRequest(keys=keys))
    assert {e.layer for e in held.entries} == {pb.CACHE_LAYER_L1}
    deleted = await a.stub.DeleteByPrefix(pb.DeleteByPrefixRequest(prefix=prefix))
    assert deleted.deleted_count == len(keys)
    pending = set(keys)
    while pending:  # B learns of each key from Redis' pushes
        _, event = await watches[1].next("invalidated")
        pending -= set(event.invalidated.keys)
    after = await b.stub.GetMany(pb.GetManyRequest(keys=keys))
    assert not any(e.found for e in after.entries)


@dataclass
class Burst:
    admitted: int = 0
    """Every admission, degraded ones included."""
    degraded: int = 0
    refill: int = 0
    """Slots GCRA rightly refilled while the burst ran."""


async def rate_limit_burst(
    gateways: list[GatewayProcess], key: str, limit: int, window: float, attempts: int
) -> Burst:
    """`attempts` RateLimit calls from 64 concurrent callers spread over both gateways."""
    rate = pb.RateLimitRequest(key=key, limit=limit)
    rate.window.FromSeconds(int(window))
    burst = Burst()
    budget = iter(range(attempts))

    async def caller(gw: GatewayProcess) -> None:
        for _ in budget:
            reply = await gw.stub.RateLimit(rate, timeout=5)
            burst.admitted += reply.allowed
            burst.degraded += reply.degraded

    started = monotonic()
    await asyncio.gather(*(caller(gateways[i % 2]) for i in range(64)))
    burst.refill = math.ceil((monotonic() - started) * limit / window)
    return burst


async def test_rate_limit_holds_across_gateways_and_concurrent_callers(
    gateways: list[GatewayProcess], request: pytest.FixtureRequest
) -> None:
    limit = 50
    burst = await rate_limit_burst(gateways, prefix_of(request), limit, 60.0, 400)
    # Degraded answers (a starved CPU missed a Redis deadline) count too: they
    # are refusals while Redis is up, never extra admissions.
    assert burst.admitted <= limit + burst.refill
    if not burst.degraded:
        assert burst.admitted >= limit, "the whole burst is admitted"


async def test_rate_limit_holds_while_redis_answers_too_late(
    gateways: list[GatewayProcess], redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    """EVALSHA held past the deadline: timeouts, then open breakers, and Redis still up."""
    limit = 50
    async with aioredis.Redis.from_url(redis_server.url) as admin:
        await admin.client_pause(1500, all=False)  # write commands wait; PING does not
        try:
            burst = await rate_limit_burst(gateways, prefix_of(request), limit, 60.0, 400)
        finally:
            await admin.client_unpause()
    assert burst.degraded > 0, "the pause was met"
    assert burst.admitted <= limit + burst.refill, "no local admission while Redis is up"


async def test_metrics_count_cache_layers_and_rpcs(gateways: list[GatewayProcess]) -> None:
    url = f"http://127.0.0.1:{gateways[0].metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(scrape)
    for name in (
        'marquee_cache_hits_total{layer="l1"}',
        'marquee_cache_misses_total{layer="l2"}',
        "marquee_cache_invalidations_total",
        "marquee_cache_ratelimit_decisions_total",
    ):
        assert name in text, name
    assert "CacheService" in text, "the platform's RPC metrics"


async def test_redis_killed_and_restarted_mid_traffic(
    gateways: list[GatewayProcess], redis_server: RedisServer, writer: aioredis.Redis,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    keys = [f"{prefix_of(request)}{i}" for i in range(10)]
    await writer.mset(dict.fromkeys(keys, b"before"))
    restarted_at = math.inf
    stale: list[str] = []
    failures: list[tuple[grpc.StatusCode, float]] = []
    stop = asyncio.Event()

    async def traffic(gw: GatewayProcess) -> None:
        while not stop.is_set():
            for key in keys:
                began = monotonic()
                try:
                    reply = await get(gw, key)
                except grpc.aio.AioRpcError as error:
                    failures.append((error.code(), monotonic() - began))
                    await asyncio.sleep(0.005)
                    continue
                if reply.value == b"before" and began > restarted_at:
                    stale.append(key)  # the restart lost it: so must every L1

    tasks = [asyncio.create_task(traffic(gateways[i % 2])) for i in range(8)]
    try:
        await asyncio.sleep(0.3)
        redis_server.kill()
        for gw in gateways:
            await gw.wait_status(SERVICE_NAME, NOT_SERVING, timeout=5)
            assert await gw.status("") == SERVING, "the process stays up: it recovers by itself"
        limited = await gateways[0].stub.RateLimit(
            pb.RateLimitRequest(key="k", limit=1, window=Duration(seconds=1)), timeout=2
        )
        assert limited.degraded, "the local limiter answers"
        assert limited.allowed
        await asyncio.sleep(0.3)
        # From a worker thread, so the loop keeps the traffic going (a spawn from a
        # worker thread asks for no death signal: marquee_localservers.spawning).
        await asyncio.to_thread(redis_server.start)
        restarted_at = monotonic()
        for gw in gateways:
            await gw.wait_status(SERVICE_NAME, SERVING, timeout=10)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert failures, "traffic met the outage"
    assert {code for code, _ in failures} == {grpc.StatusCode.UNAVAILABLE}
    slowest = max(took for _, took in failures)
    # Bounded, not waiting on the dead Redis: the bound is generous for a loaded
    # machine; how fast is a benchmark figure.
    assert slowest < 5.0, f"UNAVAILABLE came after waiting on Redis: {slowest:.3f} s"
    assert not stale, f"served from L1 after Redis lost them: {stale[:3]}"
    # A new client: the writer's pooled connection died with the old server.
    async with aioredis.Redis.from_url(redis_server.url) as fresh:
        await fresh.set(keys[1], b"after")
    for gw in gateways:
        assert not (await get(gw, keys[0])).found
        assert (await get(gw, keys[1])).value == b"after"
        async with asyncio.timeout(5):  # tracking reconnects on its own backoff
            while (await get(gw, keys[1])).layer != pb.CACHE_LAYER_L1:
                await asyncio.sleep(0.05)
    print(
        f"\nRedis outage: {len(failures)} UNAVAILABLE answers, slowest {slowest * 1e3:.0f} ms, "
        f"median {sorted(t for _, t in failures)[len(failures) // 2] * 1e3:.1f} ms"
    )
