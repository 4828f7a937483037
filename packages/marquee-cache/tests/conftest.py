from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from marquee_cache import Cache
from marquee_cache_support import CacheFactory

_ids = itertools.count()


@pytest.fixture
def ns() -> str:
    """A key prefix of its own per test: the session Redis is shared."""
    return f"t{next(_ids)}:"


@pytest.fixture
async def cache_factory(redis_url: str) -> AsyncIterator[CacheFactory]:
    """Make Cache instances (default: the session Redis); all closed after the test."""
    made: list[Cache] = []

    async def make(url: str | None = None, **overrides: Any) -> Cache:
        cache = await Cache.connect(url or redis_url, **overrides)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


@pytest.fixture
async def writer(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An outside client that knows nothing of any cache."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
