"""Mirror the cache's Redis state into gRPC health and the invalidation feed.

CacheService is SERVING while Redis answers: tracking up with the breaker
closed, or, when tracking is down, a guarded PING succeeding (without it an
idle gateway would look healthy with Redis gone, since only failed calls open
the breaker). The overall status ("") is left to the platform: the process is
alive and recovers by itself, so it must not be restarted for a Redis outage.
"""

from __future__ import annotations

import asyncio

from marquee.cache.v1 import cache_pb2
from marquee_cache import Cache, CacheError
from marquee_cache_gateway.feed import InvalidationFeed
from marquee_platform import ServiceContext

SERVICE_NAME = cache_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name


async def redis_serving(cache: Cache) -> bool:
    status = cache.health().status
    if status != "degraded":
        return status == "ok"
    try:
        # Bounded by the command timeout; a failure also counts toward the breaker.
        await cache.redis.run(lambda r: r.ping())
    except CacheError:
        return False
    return True


async def watch_health(
    cache: Cache, feed: InvalidationFeed, ctx: ServiceContext, interval: float, reported: bool
) -> None:
    """Report each change of the Redis state after `reported`; runs until cancelled."""
    while True:
        await asyncio.sleep(interval)
        serving = await redis_serving(cache)
        health = cache.health()
        feed.tracking_state(health.tracking)
        if serving != reported:
            reported = serving
            ctx.set_serving(SERVICE_NAME, serving)
            ctx.log.warning(
                "redis state changed",
                serving=serving,
                status=health.status,
                breaker=health.breaker.value,
                last_error=health.last_error,
            )


async def report_initial(cache: Cache, ctx: ServiceContext) -> bool:
    """Called by the registrar, so the platform never reports its default SERVING
    while Redis is down at start."""
    serving = await redis_serving(cache)
    ctx.set_serving(SERVICE_NAME, serving)
    return serving
