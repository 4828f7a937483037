"""Coherence on a real Redis: two instances and an outside writer (C-1..4, C-7, C-11, C-12)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from time import monotonic

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from marquee_cache import Cache, Invalidation, InvalidationStream
from marquee_cache_support import CacheFactory
from marquee_localservers import RedisServer


async def next_invalidation(stream: InvalidationStream, key: str, since: float) -> Invalidation:
    """The first event for `key` (or a flush) processed at or after `since`."""
    async with asyncio.timeout(2):
        async for event in stream:
            if event.at >= since and (event.flush or key in event.keys):
                return event
    raise AssertionError("stream ended")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_outside_write_reaches_both_instances(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a, b = await cache_factory(), await cache_factory()
    key = ns + "k"
    delays: list[float] = []
    async with a.invalidations() as sa, b.invalidations() as sb:
        for i in range(200):
            await writer.set(key, f"old{i}")
            # An outside write is acknowledged before its push reaches us; a round
            # trip on the tracking connection (sync) orders the two.
            await asyncio.gather(a.sync(), b.sync())
            assert await a.get(key) == await b.get(key) == f"old{i}".encode()
            assert a.peek(key) == b.peek(key) == f"old{i}".encode(), "read under tracking fills L1"
            sent = monotonic()
            await writer.set(key, f"new{i}")
            for stream in (sa, sb):
                delays.append((await next_invalidation(stream, key, sent)).at - sent)
            # The invalidation has arrived: no instance may serve the old value.
            assert await a.get(key) == await b.get(key) == f"new{i}".encode()
    p50, p99 = percentile(delays, 0.5) * 1e3, percentile(delays, 0.99) * 1e3
    print(f"\ninvalidation delay (in-process, write sent -> push applied): "
          f"p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(delays)}")  # fmt: skip
    # Every write's invalidation reached both instances; how fast is bench/cache's figure.
    assert len(delays) == 400


async def test_own_write_is_read_back_at_once(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a, b = await cache_factory(), await cache_factory()
    key = ns + "k"
    await a.set(key, b"v1")
    assert await a.get(key) == await b.get(key) == b"v1"
    await a.set(key, b"v2")
    assert await a.get(key) == b"v2", "the writer never waits for its own push"
    await b.sync()
    assert await b.get(key) == b"v2"
    assert await a.delete(key) == 1
    assert await a.get(key) is None
    await b.sync()
    assert await b.get(key) is None
    assert await writer.exists(key) == 0


async def test_misses_are_cached_until_created(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a = await cache_factory()
    key = ns + "missing"
    assert await a.get(key) is None
    lookup = await a.lookup(key)
    assert not lookup.found
    assert lookup.ttl is not None, "a tracked miss is cacheable"
    assert a.peek(key) is None, "the miss is held in L1"
    await writer.set(key, b"created")
    await a.sync()
    assert a.peek(key) is False
    assert await a.get(key) == b"created"


async def test_get_many_mixes_layers(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a = await cache_factory()
    keys = [f"{ns}{i}" for i in range(100)]
    await writer.mset({k: k.encode() for k in keys[:50]})
    assert await a.get(keys[0]) == keys[0].encode()
    got = await a.get_many(keys)
    assert got == {k: (k.encode() if i < 50 else None) for i, k in enumerate(keys)}
    assert all(a.peek(k) is not False for k in keys)


async def test_concurrent_misses_fetch_once(cache_factory: CacheFactory, ns: str) -> None:
    a = await cache_factory()
    key = ns + "hot"
    await a.set(key, b"v")
    before = sample("marquee_cache_misses_total", layer="l1")
    results = await asyncio.gather(*(a.get(key) for _ in range(200)))
    assert results == [b"v"] * 200
    assert sample("marquee_cache_misses_total", layer="l1") - before == 1


async def test_l1_honours_the_redis_ttl(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a = await cache_factory(l1_max_ttl=60.0)
    key, forever = ns + "short", ns + "forever"
    await writer.set(key, b"v", px=300)
    await writer.set(forever, b"v")
    lookup = await a.lookup(key)
    assert lookup.ttl is not None
    assert 0 < lookup.ttl <= 0.3
    lookup = await a.lookup(forever)
    assert lookup.ttl == 60.0, "a key without TTL is held at most l1_max_ttl"
    await asyncio.sleep(0.31)
    # Expired in L1 by itself, whether or not Redis has pushed the expiry yet.
    assert a.peek(key) is False
    assert await a.get(key) is None


async def test_sub_second_ttl_on_set(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a = await cache_factory()
    key = ns + "k"
    await a.set(key, b"v", ttl=0.25)
    assert 0 < await writer.pttl(key) <= 250
    with pytest.raises(ValueError, match="positive"):
        await a.set(key, b"v", ttl=0)


async def test_delete_prefix_across_instances(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a, b = await cache_factory(scan_batch=50), await cache_factory()
    prefix = ns + "odd*[x]?:"  # glob characters must match literally
    doomed = [f"{prefix}{i}" for i in range(300)]
    lookalike = ns + "oddAB[x]?:1"  # would match if '*' were not escaped
    await writer.mset({k: b"v" for k in [*doomed, lookalike]})
    for cache in (a, b):
        await cache.get_many([*doomed, lookalike])
    assert await a.delete_prefix(prefix) == 300
    await b.sync()
    for cache in (a, b):
        got = await cache.get_many([*doomed, lookalike])
        assert got == {**dict.fromkeys(doomed), lookalike: b"v"}
    assert await writer.exists(*doomed) == 0
    with pytest.raises(ValueError, match="empty prefix"):
        await a.delete_prefix("")


async def test_flushall_empties_every_l1(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False)
    a, b = await cache_factory(server.url), await cache_factory(server.url)
    async with aioredis.Redis.from_url(server.url) as outside:
        await outside.set("k", b"v")
        assert await a.get("k") == await b.get("k") == b"v"
        async with a.invalidations() as events:
            await outside.flushall()
            event = await next_invalidation(events, "k", 0)
        assert event.flush
        assert event.reason == "flushall"
        await b.sync()
        assert a.peek("k") is False
        assert b.peek("k") is False
        assert await a.get("k") is None
        assert a.health().status == "ok", "a flush is not a loss of tracking"


async def test_small_tracking_table_costs_misses_not_staleness(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False, extra_args=["--tracking-table-max-keys", "10"])
    a = await cache_factory(server.url)
    keys = [f"k{i}" for i in range(200)]
    before = sample("marquee_cache_invalidations_total", kind="key")
    async with aioredis.Redis.from_url(server.url) as outside:
        await outside.mset({k: b"0" for k in keys})
        rng = random.Random(4)
        for round_ in range(1, 20):
            await a.get_many(keys)
            changed = rng.sample(keys, 5)
            await outside.mset({k: str(round_).encode() for k in changed})
            await a.sync()
            truth = dict(zip(keys, await outside.mget(keys), strict=True))
            assert await a.get_many(keys) == truth
    spurious = sample("marquee_cache_invalidations_total", kind="key") - before
    assert spurious > 19 * 5, "the overflowing table should have evicted (invalidated) keys"


async def test_fill_invalidate_race_under_concurrent_writers(
    cache_factory: CacheFactory, writer: aioredis.Redis, redis_url: str, ns: str
) -> None:
    """C-11: readers race writers on few keys; once quiet, every L1 must equal Redis."""
    caches = [await cache_factory(), await cache_factory()]
    keys = [f"{ns}{i}" for i in range(8)]
    await writer.mset({k: b"0" for k in keys})
    stop = asyncio.Event()
    writes = 0

    async def write(seed: int) -> None:
        nonlocal writes
        rng = random.Random(seed)
        async with aioredis.Redis.from_url(redis_url) as w:
            while not stop.is_set():
                await w.set(rng.choice(keys), f"{seed}:{writes}")
                writes += 1

    async def read(cache: Cache, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            if rng.random() < 0.3:
                await cache.get_many(rng.sample(keys, 3))
            else:
                await cache.get(rng.choice(keys))
            await asyncio.sleep(0)  # an L1 hit never yields to the loop by itself

    tasks = [asyncio.create_task(write(s)) for s in range(4)]
    tasks += [asyncio.create_task(read(c, s)) for c in caches for s in range(6)]
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*tasks)
    truth = dict(zip(keys, await writer.mget(keys), strict=True))
    for cache in caches:
        await cache.sync()
        held = {k: cache.peek(k) for k in keys if cache.peek(k) is not False}
        assert held == {k: truth[k] for k in held}, "an L1 entry disagrees with Redis"
        assert await cache.get_many(keys) == truth
    assert writes > 500


async def test_invalidation_stream_overflow_degrades_to_flush(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    a = await cache_factory()
    keys = [f"{ns}{i}" for i in range(20)]
    await writer.mset({k: b"0" for k in keys})
    stream = a.invalidations(maxsize=4)
    for key in keys:
        await a.get(key)
        await writer.set(key, b"1")
        await a.sync()
    events = []
    with contextlib.suppress(TimeoutError):
        while True:
            events.append(await asyncio.wait_for(anext(stream), 0.05))
    assert len(events) <= 4
    assert any(e.flush and e.reason == "overflow" for e in events)
    stream.close()
