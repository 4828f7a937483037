"""marquee-cache: a two-level cache whose process-local L1 is kept coherent by
Redis server-assisted client-side caching (RESP3 CLIENT TRACKING).

    cache = await Cache.connect("redis://127.0.0.1:6379/0")
    await cache.set("user:1", b"...", ttl=30)
    value = await cache.get("user:1")        # L1 hit after the first read
    limiter = RateLimiter(cache.redis)
    decision = await limiter.hit("login:alice", limit=5, window=60)
    await cache.close()
"""

from marquee_cache.breaker import BreakerState, CircuitBreaker
from marquee_cache.client import Cache, Health, Loader, escape_glob
from marquee_cache.config import CacheConfig
from marquee_cache.errors import CacheCommandError, CacheError, CacheUnavailable
from marquee_cache.events import Invalidation, InvalidationStream
from marquee_cache.flight import Layer, Lookup
from marquee_cache.ratelimit import Decision, LocalLimiter, RateLimiter

__all__ = [
    "BreakerState",
    "Cache",
    "CacheCommandError",
    "CacheConfig",
    "CacheError",
    "CacheUnavailable",
    "CircuitBreaker",
    "Decision",
    "Health",
    "Invalidation",
    "InvalidationStream",
    "Layer",
    "Loader",
    "LocalLimiter",
    "Lookup",
    "RateLimiter",
    "escape_glob",
]
