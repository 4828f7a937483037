"""gRPC wiring of the cache gateway: the cache, its owned tasks, and shutdown order."""

from __future__ import annotations

import grpc

from marquee.cache.v1 import cache_pb2_grpc
from marquee_cache import Cache, RateLimiter
from marquee_cache_gateway.feed import InvalidationFeed
from marquee_cache_gateway.health import SERVICE_NAME, report_initial, watch_health
from marquee_cache_gateway.servicer import CacheServicer
from marquee_cache_gateway.settings import CacheSettings
from marquee_platform import ServiceContext

# Redis may be down at start: serve anyway (UNAVAILABLE, NOT_SERVING) and recover
# once it answers, rather than fail to start and be restarted in a loop.
TRACKING_WAIT_SECONDS = 2.0


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, CacheSettings)
    cache = await Cache.connect(
        str(settings.redis_url),
        cluster=settings.redis_cluster,
        wait_for_tracking=TRACKING_WAIT_SECONDS,
        command_timeout=settings.redis_command_timeout,
        connect_timeout=settings.redis_connect_timeout,
        heartbeat_interval=settings.tracking_heartbeat_interval,
        heartbeat_timeout=settings.redis_command_timeout,
        reconnect_max_delay=settings.tracking_reconnect_max_delay,
        breaker_reset_timeout=settings.breaker_reset_timeout,
        l1_max_entries=settings.l1_max_entries,
        l1_max_ttl=settings.l1_max_ttl,
        negative_ttl=settings.negative_ttl,
        client_name="marquee-cache-gateway",
    )
    ctx.on_shutdown(cache.close)  # runs after the drain and after the owned tasks stopped
    feed = InvalidationFeed(cache)

    async def end_streams() -> None:
        # Before the drain: open WatchInvalidations streams would otherwise hold it
        # for the whole grace period.
        feed.close()

    ctx.on_stop(end_streams)
    ctx.spawn(feed.run(), name="invalidation-feed")
    serving = await report_initial(cache, ctx)
    ctx.spawn(
        watch_health(cache, feed, ctx, settings.health_interval, serving), name="redis-health"
    )
    cache_pb2_grpc.add_CacheServiceServicer_to_server(
        CacheServicer(cache, RateLimiter(cache.redis), feed, settings.max_key_bytes), server
    )
    return [SERVICE_NAME]
