"""What callers can learn from the cache (issue 9): the layer that answered, a loader
as the backend of record, and invalidation events that say what they dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic, time

import redis.asyncio as aioredis

from marquee_cache import Invalidation, InvalidationStream, Layer
from marquee_cache_support import FAST, CacheFactory
from marquee_localservers import RedisServer, free_port


async def next_event(stream: InvalidationStream, key: str) -> Invalidation:
    async with asyncio.timeout(2):
        async for event in stream:
            if key in event.keys or event.flush:
                return event
    raise AssertionError("stream ended")


async def test_lookup_names_the_layer(cache_factory: CacheFactory, ns: str) -> None:
    cache = await cache_factory()
    key = ns + "k"
    await cache.set(key, b"v")
    first = await cache.lookup(key)
    assert (first.value, first.layer) == (b"v", Layer.L2)
    second = await cache.lookup(key)
    assert (second.value, second.layer) == (b"v", Layer.L1)
    assert second.expires_at is not None
    assert second.expires_at > monotonic()
    many = await cache.lookup_many([key, ns + "absent"])
    assert [lk.layer for lk in many.values()] == [Layer.L1, Layer.L2]


async def test_a_loader_answers_what_redis_lacks_and_fills_redis(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    cache = await cache_factory()
    key = ns + "k"
    asked: list[str] = []

    async def loader(k: str) -> bytes | None:
        asked.append(k)
        return b"from the backend"

    assert await cache.get(key) is None  # a cached miss, which the loader replaces
    loaded = await cache.lookup(key, loader=loader, loader_ttl=30)
    assert (loaded.value, loaded.layer, loaded.ttl) == (b"from the backend", Layer.LOADER, None)
    assert await writer.get(key) == b"from the backend"
    assert 0 < await writer.pttl(key) <= 30_000
    assert (await cache.lookup(key, loader=loader)).layer in (Layer.L2, Layer.L1)
    assert asked == [key], "Redis answers once it holds the value"
    await writer.set(key, b"newer")
    await cache.sync()

    async def stale_loader(k: str) -> bytes | None:
        return b"older"

    assert await cache.get(key, loader=stale_loader) == b"newer"


async def test_a_loader_answers_while_redis_is_unavailable(cache_factory: CacheFactory) -> None:
    cache = await cache_factory(
        f"redis://127.0.0.1:{free_port()}/0", wait_for_tracking=None, **FAST
    )

    async def loader(k: str) -> bytes | None:
        return b"backend:" + k.encode()

    lookup = await cache.lookup("k", loader=loader)
    assert (lookup.value, lookup.layer, lookup.ttl) == (b"backend:k", Layer.LOADER, None)


async def test_invalidation_events_say_what_they_dropped(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False)  # a private one: the test flushes it
    cache = await cache_factory(server.url)
    async with aioredis.Redis.from_url(server.url) as writer, cache.invalidations() as events:
        await writer.mset({"held": b"1", "gone": b"1", "other": b"1"})
        assert await cache.get_many(["held", "gone", "other"]) == dict.fromkeys(
            ["held", "gone", "other"], b"1"
        )
        # Our own delete drops the entry before the push comes back for it.
        await cache.delete("gone")
        event = await next_event(events, "gone")
        assert (event.dropped, event.dropped_keys) == (0, ())
        before_wall, before = time(), monotonic()
        await writer.set("held", b"2")
        event = await next_event(events, "held")
        assert (event.dropped, event.dropped_keys) == (1, ("held",))
        assert event.at_monotonic == event.at
        assert event.at >= before
        assert event.at_wall >= before_wall
        await writer.flushall()
        event = await next_event(events, "")
        assert event.flush
        assert event.dropped == 1, "only 'other' was still held"
