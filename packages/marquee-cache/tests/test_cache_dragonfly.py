"""The same coherence guarantees on Dragonfly (C-8), where a container engine exists.

Dragonfly has CLIENT TRACKING without BCAST or REDIRECT and refuses Lua that
touches undeclared keys, so these are the parts of the design that lean on
exactly that. This machine has no container engine: the tests are selected
with `make test-dragonfly` (`-m dragonfly`) and take Dragonfly from a
container or from MARQUEE_TEST_DRAGONFLY_URL. They have never run here: the
library is untested against Dragonfly (no Dragonfly binary on these machines).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from marquee_cache import RateLimiter
from marquee_cache_support import CacheFactory

pytestmark = pytest.mark.dragonfly


@pytest.fixture
async def dragonfly(dragonfly_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(dragonfly_url)
    yield client
    await client.aclose()


async def test_outside_write_invalidates_every_instance(
    cache_factory: CacheFactory, dragonfly: aioredis.Redis, dragonfly_url: str, ns: str
) -> None:
    a, b = await cache_factory(dragonfly_url), await cache_factory(dragonfly_url)
    key = ns + "k"
    for i in range(50):
        await dragonfly.set(key, f"old{i}")
        await asyncio.gather(a.sync(), b.sync())
        assert await a.get(key) == await b.get(key) == f"old{i}".encode()
        assert a.peek(key) == b.peek(key) == f"old{i}".encode(), "read under tracking fills L1"
        await dragonfly.set(key, f"new{i}")
        # sync() returns once every push sent before it has been applied.
        await asyncio.gather(a.sync(), b.sync())
        assert await a.get(key) == await b.get(key) == f"new{i}".encode()


async def test_flushall_empties_l1(
    cache_factory: CacheFactory, dragonfly: aioredis.Redis, dragonfly_url: str, ns: str
) -> None:
    cache = await cache_factory(dragonfly_url)
    await dragonfly.set(ns + "k", b"v")
    assert await cache.get(ns + "k") == b"v"
    await dragonfly.flushall()
    await cache.sync()
    assert cache.peek(ns + "k") is False
    assert await cache.get(ns + "k") is None


async def test_prefix_delete_clears_other_instances(
    cache_factory: CacheFactory, dragonfly_url: str, ns: str
) -> None:
    a, b = await cache_factory(dragonfly_url), await cache_factory(dragonfly_url)
    keys = [f"{ns}p:{i}" for i in range(20)]
    for key in keys:
        await a.set(key, b"v", ttl=30)
    assert all([await b.get(key) == b"v" for key in keys])
    await a.delete_prefix(ns + "p:")
    await b.sync()
    assert all([await b.get(key) is None for key in keys])


async def test_rate_limiter_script_runs_with_declared_keys(
    cache_factory: CacheFactory, dragonfly_url: str, ns: str
) -> None:
    limiter = RateLimiter((await cache_factory(dragonfly_url)).redis)
    decisions = await asyncio.gather(*(limiter.hit(ns + "rl", 10, 60) for _ in range(30)))
    assert sum(d.allowed for d in decisions) == 10
    assert all(d.source == "redis" for d in decisions), "Dragonfly must run the script itself"
