"""The GCRA limiter against a real Redis (C-6): concurrency, NOSCRIPT, local fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from marquee_cache import RateLimiter
from marquee_cache_support import CacheFactory, until
from marquee_localservers import RedisServer


async def test_concurrent_callers_never_exceed_the_limit(
    cache_factory: CacheFactory, ns: str
) -> None:
    # Two instances, as two gateway processes would be, share one budget. The window
    # is long so that no slot refills (one per 72 s) even on a slow, loaded machine:
    # GCRA rightly admits one more per interval that passes during the burst.
    # A generous deadline: this is about atomicity, not about a slow Redis.
    limiters = [RateLimiter((await cache_factory(command_timeout=10)).redis) for _ in range(2)]
    decisions = await asyncio.gather(
        *(limiters[i % 2].hit(ns + "login", limit=50, window=3600) for i in range(400))
    )
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 50
    assert all(d.source == "redis" for d in decisions)
    assert sorted(d.remaining for d in allowed) == list(range(50))
    denied = [d for d in decisions if not d.allowed]
    assert all(0 < d.retry_after <= 72 for d in denied), "one slot refills every 72 s"


async def test_refill_admits_one_per_interval(cache_factory: CacheFactory, ns: str) -> None:
    # No timing bound: a stall between two hits only refills more, so the test
    # checks what the limiter says (retry_after) and that waiting it out admits.
    limiter = RateLimiter((await cache_factory()).redis)
    key = ns + "k"
    first = [await limiter.hit(key, limit=2, window=0.2) for _ in range(3)]
    assert [d.allowed for d in first] == [True, True, False]
    assert 0 < first[2].retry_after <= 0.1, "one emission interval (0.1 s) at most"
    await asyncio.sleep(first[2].retry_after)
    assert (await limiter.hit(key, limit=2, window=0.2)).allowed


async def test_script_flush_is_survived(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    limiter = RateLimiter((await cache_factory()).redis)
    assert (await limiter.hit(ns + "k", limit=5, window=60)).remaining == 4
    await writer.script_flush()
    decision = await limiter.hit(ns + "k", limit=5, window=60)
    assert decision.source == "redis"
    assert decision.remaining == 3, "NOSCRIPT reloaded the script"
    (exists,) = await writer.script_exists(limiter._script.sha)
    assert exists


async def test_local_limiter_takes_over_while_redis_is_down(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False)
    cache = await cache_factory(server.url, command_timeout=0.2, breaker_reset_timeout=0.2)
    limiter = RateLimiter(cache.redis)
    assert (await limiter.hit("k", limit=3, window=60)).source == "redis"
    server.kill()
    await until(lambda: not cache.health().tracking)  # the cache knows Redis is down
    down = [await limiter.hit("k", limit=3, window=60) for _ in range(5)]
    assert all(d.source == "local" for d in down)
    # The local limiter starts from what Redis last said: one of the three is spent.
    assert [d.allowed for d in down] == [True, True, False, False, False]
    server.start()
    async with asyncio.timeout(5):
        while (decision := await limiter.hit("other", limit=3, window=60)).source != "redis":
            await asyncio.sleep(0.05)
    assert decision.allowed
    denied_local = REGISTRY.get_sample_value(
        "marquee_cache_ratelimit_decisions_total", {"decision": "denied", "source": "local"}
    )
    assert denied_local is not None
    assert denied_local >= 2


async def test_a_hit_redis_did_not_answer_in_time_is_refused_not_admitted_locally(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False)
    cache = await cache_factory(server.url, command_timeout=0.2)
    limiter = RateLimiter(cache.redis)
    assert (await limiter.hit("k", limit=3, window=60)).source == "redis"
    async with aioredis.Redis.from_url(server.url) as admin:
        # Redis holds every write command (EVALSHA included) for a second, then runs it:
        # past the deadline, the hit may still be counted there.
        await admin.client_pause(1000, all=False)
        decision = await limiter.hit("k", limit=3, window=60)
    assert decision.source == "timeout"
    assert not decision.allowed
    assert decision.retry_after > 0


async def test_while_redis_is_up_a_breaker_opened_by_timeouts_refuses_rather_than_admit_locally(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """Redis up but not answering in time: its shared budget may be spent by others."""
    server = redis_server_factory(persistent=False)
    cache = await cache_factory(server.url, command_timeout=0.1, breaker_reset_timeout=30)
    limiter = RateLimiter(cache.redis)
    other = RateLimiter((await cache_factory(server.url)).redis)
    assert [(await other.hit("k", limit=3, window=3600)).allowed for _ in range(3)] == [True] * 3
    async with aioredis.Redis.from_url(server.url) as admin:
        await admin.client_pause(2000, all=False)  # EVALSHA waits; PING does not
        timed_out = [await limiter.hit("k", limit=3, window=3600) for _ in range(3)]
        assert cache.health().breaker.value == "open"
        assert cache.health().tracking, "Redis is up: the tracking connection says so"
        refused = [await limiter.hit("k", limit=3, window=3600) for _ in range(3)]
        await admin.client_unpause()
    assert {d.source for d in timed_out + refused} == {"timeout"}
    assert not any(d.allowed for d in timed_out + refused), "the shared budget was spent"
