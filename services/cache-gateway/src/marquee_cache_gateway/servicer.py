"""CacheService on top of marquee-cache: every read and write goes through the library.

Reads look in L1 first with `peek` (synchronous, no I/O) so the answer can name
its layer; keys L1 cannot answer go to `lookup_many`, which reads them from Redis
under tracking (filling L1) and shares fetches already in flight. Redis down
surfaces as the library's CacheUnavailable and leaves as UNAVAILABLE: nothing is
ever answered from an L1 that can no longer be known fresh (the library flushes
and bypasses L1 itself when tracking is lost).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from opentelemetry import trace

from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee_cache import Cache, CacheCommandError, CacheUnavailable, Lookup, RateLimiter
from marquee_cache_gateway import validation
from marquee_cache_gateway.feed import InvalidationFeed
from marquee_platform import errors

Context = grpc.aio.ServicerContext[Any, Any]
L1 = cache_pb2.CACHE_LAYER_L1
L2 = cache_pb2.CACHE_LAYER_L2


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    try:
        yield
    except CacheUnavailable as exc:
        raise errors.Unavailable(f"cache unavailable: {exc}") from exc
    except CacheCommandError as exc:
        # e.g. WRONGTYPE: the key holds something this API does not read or write.
        raise errors.FailedPrecondition(f"Redis refused the command: {exc}") from exc


def duration(seconds: float) -> Duration:
    result = Duration()
    result.FromNanoseconds(math.ceil(seconds * 1e9))
    return result


def _peeked(cache: Cache, key: str) -> tuple[bool, bytes | None]:
    """(L1 answered, value); `peek` says False when L1 cannot answer, None for a cached miss."""
    peeked = cache.peek(key)
    if isinstance(peeked, bytes):
        return True, peeked
    return peeked is None, None


def _entry(key: str, lookup: Lookup) -> cache_pb2.CacheEntry:
    entry = cache_pb2.CacheEntry(key=key, found=lookup.found, layer=L2)
    if lookup.value is not None:
        entry.value = lookup.value
    if lookup.ttl is not None:
        entry.ttl.CopyFrom(duration(lookup.ttl))
    return entry


class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    def __init__(
        self, cache: Cache, limiter: RateLimiter, feed: InvalidationFeed, max_key_bytes: int
    ) -> None:
        self._cache = cache
        self._limiter = limiter
        self._feed = feed
        self._max_key_bytes = max_key_bytes

    async def Get(self, request: cache_pb2.GetRequest, context: Context) -> cache_pb2.GetResponse:
        key = request.key
        validation.check_get(request, self._max_key_bytes)
        # Taken before the read: any invalidation applied after it numbers higher.
        sequence = self._feed.sequence
        peeked = self._cache.peek(key)
        if peeked is None or isinstance(peeked, bytes):  # L1 answered (None: a cached miss)
            trace.get_current_span().set_attribute("marquee.cache.layer", "l1")
            return cache_pb2.GetResponse(
                found=peeked is not None,
                value=peeked or b"",
                layer=L1,
                sequence=sequence,
                instance_id=self._feed.instance_id,
            )
        trace.get_current_span().set_attribute("marquee.cache.layer", "l2")
        with redis_errors():
            lookup = await self._cache.lookup(key)
        entry = _entry(key, lookup)
        return cache_pb2.GetResponse(
            found=entry.found,
            value=entry.value,
            ttl=entry.ttl if entry.HasField("ttl") else None,
            layer=L2,
            sequence=sequence,
            instance_id=self._feed.instance_id,
        )

    async def GetMany(
        self, request: cache_pb2.GetManyRequest, context: Context
    ) -> cache_pb2.GetManyResponse:
        validation.check_get_many(request, self._max_key_bytes)
        sequence = self._feed.sequence
        entries: dict[str, cache_pb2.CacheEntry] = {}
        missing: list[str] = []
        for key in dict.fromkeys(request.keys):
            in_l1, value = _peeked(self._cache, key)
            if in_l1:
                entries[key] = cache_pb2.CacheEntry(
                    key=key, found=value is not None, value=value or b"", layer=L1
                )
            else:
                missing.append(key)
        trace.get_current_span().set_attributes(
            {"marquee.cache.l1_hits": len(entries), "marquee.cache.l1_misses": len(missing)}
        )
        if missing:
            with redis_errors():
                lookups = await self._cache.lookup_many(missing)
            for key, lookup in lookups.items():
                entries[key] = _entry(key, lookup)
        return cache_pb2.GetManyResponse(
            # One entry per requested key, duplicates included, in request order.
            entries=[entries[key] for key in request.keys],
            sequence=sequence,
            instance_id=self._feed.instance_id,
        )

    async def Set(self, request: cache_pb2.SetRequest, context: Context) -> cache_pb2.SetResponse:
        ttl = validation.check_set(request, self._max_key_bytes)
        if request.condition == cache_pb2.SET_CONDITION_UNSPECIFIED:
            with redis_errors():
                await self._cache.set(request.key, request.value, ttl)
            return cache_pb2.SetResponse(stored=True)
        px = max(1, math.ceil(ttl * 1000)) if ttl else None
        nx = request.condition == cache_pb2.SET_CONDITION_IF_ABSENT
        with redis_errors():
            stored = await self._cache.redis.run(
                lambda r: r.set(request.key, request.value, px=px, nx=nx, xx=not nx)
            )
            if stored:
                # The library's set() drops our own L1 entry itself; this path went
                # around it, so wait until Redis' push for the write has been applied
                # here: a read that follows the reply then sees the new value.
                await self._cache.sync()
        return cache_pb2.SetResponse(stored=bool(stored))

    async def Delete(
        self, request: cache_pb2.DeleteRequest, context: Context
    ) -> cache_pb2.DeleteResponse:
        validation.check_delete(request, self._max_key_bytes)
        with redis_errors():
            deleted = await self._cache.delete(*request.keys)
        return cache_pb2.DeleteResponse(deleted_count=deleted)

    async def DeleteByPrefix(
        self, request: cache_pb2.DeleteByPrefixRequest, context: Context
    ) -> cache_pb2.DeleteByPrefixResponse:
        validation.check_delete_by_prefix(request, self._max_key_bytes)
        try:
            with redis_errors():
                deleted = await self._cache.delete_prefix(request.prefix)
        finally:
            # Even a partial delete may have removed keys a remote L1 holds.
            self._feed.prefix_deleted(request.prefix)
        return cache_pb2.DeleteByPrefixResponse(deleted_count=deleted)

    async def RateLimit(
        self, request: cache_pb2.RateLimitRequest, context: Context
    ) -> cache_pb2.RateLimitResponse:
        window, cost = validation.check_rate_limit(request, self._max_key_bytes)
        with redis_errors():
            # Falls back to the in-process limiter by itself while Redis is unavailable.
            decision = await self._limiter.hit(request.key, request.limit, window, cost)
        return cache_pb2.RateLimitResponse(
            allowed=decision.allowed,
            remaining=decision.remaining,
            limit=request.limit,
            retry_after=duration(decision.retry_after),
            reset_after=duration(decision.reset_after),
            degraded=decision.source != "redis",
        )

    async def WatchInvalidations(
        self, request: cache_pb2.WatchInvalidationsRequest, context: Context
    ) -> AsyncIterator[cache_pb2.WatchInvalidationsResponse]:
        validation.check_watch(request, self._max_key_bytes)
        with self._feed.watch(request.prefixes) as watcher:
            async for message in watcher:
                yield message
