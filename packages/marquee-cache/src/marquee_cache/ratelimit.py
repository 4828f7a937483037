"""Rate limiting by GCRA (generic cell rate algorithm): one key, O(1) memory.

`limit` requests per `window`, admitted in bursts of up to `limit` and then
refilled at limit/window: over any interval of length t at most
`limit + t * limit / window` requests are admitted. Time comes from Redis
(`TIME`), so every gateway instance shares one clock.

The script is loaded once and run by EVALSHA (redis-py's `AsyncScript` reloads it
on NOSCRIPT, e.g. after SCRIPT FLUSH or a failover), and touches only KEYS[1]
(Dragonfly refuses undeclared keys; untested against Dragonfly). While Redis is
down, a process-local GCRA with the same arithmetic takes over (C-6), starting
from the state Redis last reported for the key: each instance then enforces the
limit on its own, so N instances admit up to N times what was left until Redis
returns. A call Redis did not answer while Redis is *up* is refused instead (a
deadline that ran out after the call was sent, a starved process, a breaker
opened by such timeouts): the hit may have been counted in Redis, and the
shared budget may already be spent, so admitting it locally could exceed the
limit. "Up" is the cache's own evidence: the key's tracking connection is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from time import monotonic

from redis.exceptions import TimeoutError as RedisTimeoutError

from marquee_cache import metrics
from marquee_cache.errors import CacheUnavailable
from marquee_cache.guarded import GuardedRedis

# Microsecond integers throughout: < 2^53, so Lua's doubles stay exact. The
# emission interval is rounded up, which can only admit slightly less.
# What a caller refused for lack of an answer is told to wait before trying again.
UNKNOWN_RETRY_AFTER = 0.1

GCRA_LUA = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = math.ceil(window / limit)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - interval * limit
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - (new_tat - interval * limit)) / interval), 0, new_tat - now}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    """Further requests admissible right now."""
    retry_after: float
    """Seconds until this request would be admitted (0 when allowed)."""
    reset_after: float
    """Seconds until the limiter is back to a full burst."""
    source: str
    """redis; local while Redis is down; timeout when refused because Redis did not
    answer this call while it is up (the hit may have counted there, or the shared
    budget may be spent)."""


class LocalLimiter:
    """The same GCRA in process memory, for when Redis is unavailable."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, int] = {}
        self._max_keys = max_keys

    def observe(self, key: str, reset_us: int) -> None:
        """Redis decided for `key`: its TAT is now + reset_us. Kept so that a local
        decision starts from the shared state, not from a full burst."""
        now = int(monotonic() * 1_000_000)
        tat = now + reset_us
        if tat > self._tat.get(key, 0):
            self._remember(key, tat, now)

    def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        now = int(monotonic() * 1_000_000)
        allowed, remaining, retry_us, reset_us = _gcra(
            self._tat.get(key, now), now, limit, _micros(window), cost
        )
        if allowed:
            self._remember(key, now + reset_us, now)
        return _decision(allowed, remaining, retry_us, reset_us, "local")

    def _remember(self, key: str, tat: int, now: int) -> None:
        if key not in self._tat and len(self._tat) >= self._max_keys:
            self._sweep(now)
        self._tat[key] = tat

    def _sweep(self, now: int) -> None:
        # Keys whose TAT has passed are back to a full burst: forgetting them is exact.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        while len(self._tat) >= self._max_keys:
            del self._tat[next(iter(self._tat))]


class RateLimiter:
    def __init__(self, redis: GuardedRedis, *, prefix: str = "ratelimit:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.client.register_script(GCRA_LUA)
        self.local = LocalLimiter()

    async def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        """Count `cost` against `key`'s budget of `limit` per `window` seconds."""
        if limit < 1 or window <= 0 or cost < 1:
            raise ValueError("limit and cost must be >= 1 and window > 0")
        full_key = self._prefix + key
        try:
            reply = await self._redis.run(
                lambda r: self._script(
                    keys=[full_key], args=[limit, _micros(window), cost], client=r
                ),
                key=full_key,
            )
            allowed, remaining, retry_us, reset_us = (int(x) for x in reply)
            decision = _decision(bool(allowed), remaining, retry_us, reset_us, "redis")
            self.local.observe(full_key, reset_us)
        except CacheUnavailable as exc:
            if _outcome_unknown(exc) or self._redis.answering(full_key):
                # The script may have run and counted this hit in Redis, or Redis is
                # up and others spend the shared budget: admitting it locally could
                # let a burst past the limit, so refuse it.
                decision = _decision(False, 0, _micros(UNKNOWN_RETRY_AFTER), 0, "timeout")
            else:
                decision = self.local.hit(full_key, limit, window, cost)
        metrics.RATE_LIMIT_DECISIONS.labels(
            "allowed" if decision.allowed else "denied", decision.source
        ).inc()
        return decision


def _outcome_unknown(exc: CacheUnavailable) -> bool:
    """A deadline ran out after the call was sent; a refused connection or an open
    breaker means it never reached Redis, and the local limiter may decide."""
    return isinstance(exc.__cause__, TimeoutError | RedisTimeoutError)


def _gcra(tat: int, now: int, limit: int, window: int, cost: int) -> tuple[bool, int, int, int]:
    """The Lua script's arithmetic: (allowed, remaining, retry_after_us, reset_after_us)."""
    interval = -(-window // limit)
    tat = max(tat, now)
    new_tat = tat + cost * interval
    allow_at = new_tat - interval * limit
    if now < allow_at:
        return False, 0, allow_at - now, tat - now
    return True, (now - (new_tat - interval * limit)) // interval, 0, new_tat - now


def _micros(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1_000_000))


def _decision(allowed: bool, remaining: int, retry_us: int, reset_us: int, source: str) -> Decision:
    return Decision(allowed, remaining, retry_us / 1e6, reset_us / 1e6, source)
