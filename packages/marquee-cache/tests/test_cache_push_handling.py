"""Pushes are applied in the loop's I/O callback, not one ready-queue pass later (issue 9).

Under saturation every pass of the event loop's ready queue takes as long as
all the work queued in it; a push handled by a task woken from the I/O callback
waits one extra pass, which is what made the library's invalidations lag.
"""

from __future__ import annotations

import asyncio
import select

import redis

from marquee_cache import Cache
from marquee_cache_support import CacheFactory


def tracking_fd(cache: Cache) -> int:
    (node,) = cache._topology.nodes.values()
    conn = node.tracker._conn
    assert conn is not None
    return conn._sock.fileno()


async def test_a_push_is_applied_in_the_io_callback_that_reads_it(
    cache_factory: CacheFactory, redis_url: str, ns: str
) -> None:
    cache = await cache_factory()
    key = ns + "k"
    await cache.set(key, b"old")
    await cache.sync()
    assert await cache.get(key) == b"old"
    assert cache.peek(key) == b"old"
    with redis.Redis.from_url(redis_url) as outside:
        outside.set(key, b"new")  # blocking on purpose: the loop does not poll meanwhile
    # Block until the push is in the kernel's buffer for our socket, still unread.
    readable, _, _ = select.select([tracking_fd(cache)], [], [], 5.0)
    assert readable, "Redis pushed the invalidation"
    # Pass 1 polls the socket and runs its I/O callback after this task's step;
    # pass 2 runs this task first, before anything that callback only scheduled.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert cache.peek(key) is False, "the push was applied by the I/O callback itself"
