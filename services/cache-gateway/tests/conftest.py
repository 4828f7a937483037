from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from marquee.cache.v1 import cache_pb2_grpc
from marquee_cache_gateway.app import register
from marquee_cache_gateway.settings import CacheSettings
from marquee_testing.inprocess import RunningService, serving

if TYPE_CHECKING:  # the async stub class exists only in the type stubs
    from marquee.cache.v1.cache_pb2_grpc import CacheServiceAsyncStub

_ids = itertools.count()


@pytest.fixture
def ns() -> str:
    """A key prefix of its own per test: the session Redis is shared."""
    return f"gw{next(_ids)}:"


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[RunningService]:
    settings = CacheSettings(grpc_port=0, metrics_port=-1, redis_url=redis_url)  # type: ignore[arg-type]
    async with serving("cache-gateway", settings, register) as running:
        yield running


@pytest.fixture
def stub(gateway: RunningService) -> CacheServiceAsyncStub:
    return cache_pb2_grpc.CacheServiceStub(gateway.channel)


@pytest.fixture
async def writer(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An outside client that knows nothing of any gateway."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
