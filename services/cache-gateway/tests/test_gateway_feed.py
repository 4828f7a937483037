"""The feed numbers each invalidation in the push handler that applied it (issue 9).

A feed that read the library's events from a queue in its own task was woken one
pass of the event loop's ready queue later; under saturation that pass is as long
as all the work queued in it, and WatchInvalidations lagged by as much.
"""

from __future__ import annotations

import asyncio
import select

import redis

from marquee_cache import Cache
from marquee_cache_gateway.feed import InvalidationFeed


def tracking_fd(cache: Cache) -> int:
    (node,) = cache._topology.nodes.values()
    conn = node.tracker._conn
    assert conn is not None
    return conn._sock.fileno()


async def test_an_invalidation_is_numbered_in_the_io_callback_that_reads_it(
    redis_url: str, ns: str
) -> None:
    cache = await Cache.connect(redis_url)
    feed = InvalidationFeed(cache)
    pump = asyncio.create_task(feed.run())
    try:
        key = ns + "k"
        await cache.set(key, b"old")
        await cache.sync()
        assert await cache.get(key) == b"old"
        await asyncio.sleep(0)  # the feed task has started listening
        before = feed.sequence
        with redis.Redis.from_url(redis_url) as outside:
            outside.set(key, b"new")  # blocking on purpose: the loop does not poll meanwhile
        readable, _, _ = select.select([tracking_fd(cache)], [], [], 5.0)
        assert readable, "Redis pushed the invalidation"
        # Pass 1 polls the socket and runs its I/O callback after this task's step;
        # pass 2 runs this task first, before anything that callback only scheduled.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert cache.peek(key) is False
        assert feed.sequence == before + 1, "numbered by the push handler itself"
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await cache.close()
