"""Prometheus counters, created once at import so every Cache in the process shares them.

Names follow the `marquee_cache_*_total` convention (prometheus-client adds `_total`).
"""

from prometheus_client import Counter

HITS = Counter("marquee_cache_hits", "Reads answered by a cache layer", ["layer"])
MISSES = Counter("marquee_cache_misses", "Reads a cache layer could not answer", ["layer"])
INVALIDATIONS = Counter(
    "marquee_cache_invalidations",
    "Invalidation messages received on the tracking connection",
    ["kind"],  # key | flush
)
L1_FLUSHES = Counter("marquee_cache_l1_flushes", "Whole-L1 flushes", ["reason"])
BREAKER_TRANSITIONS = Counter(
    "marquee_cache_breaker_transitions", "Circuit breaker state changes", ["state"]
)
RATE_LIMIT_DECISIONS = Counter(
    "marquee_cache_ratelimit_decisions",
    "Rate-limit decisions",
    ["decision", "source"],  # allowed|denied, redis|local
)

# Pre-bound children: `.labels()` costs a dict lookup and a lock per call.
L1_HITS = HITS.labels("l1")
L1_MISSES = MISSES.labels("l1")
L2_HITS = HITS.labels("l2")
L2_MISSES = MISSES.labels("l2")
KEY_INVALIDATIONS = INVALIDATIONS.labels("key")
FLUSH_INVALIDATIONS = INVALIDATIONS.labels("flush")
