"""Single flight never hands a reader an answer it could have known was out of date (issue 9).

A reader that starts while a fetch of its key is in flight may share it, but the
fetch's read ran before the reader started: the key may have expired or been
overwritten in between. Each test blocks the loop (as a busy loop would) while
the fetch's reply, and any push, wait unread in the socket, then starts a
second reader.
"""

from __future__ import annotations

import asyncio
import time
from time import monotonic
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from marquee_cache import Cache
from marquee_cache_support import CacheFactory

TRIALS = 5


async def sent_but_unanswered(cache: Cache) -> None:
    """Until the tracking connection has a read out that nobody has processed."""
    (node,) = cache._topology.nodes.values()
    conn = node.tracker._conn
    assert conn is not None
    async with asyncio.timeout(2):
        while not conn._pending:
            await asyncio.sleep(0)


async def test_a_reader_after_expiry_does_not_get_the_expired_value(
    cache_factory: CacheFactory, writer: aioredis.Redis, ns: str
) -> None:
    cache = await cache_factory()
    ttl = 0.2
    valid = 0
    for trial in range(100):
        key = f"{ns}k{trial}"
        sent = monotonic()
        await writer.set(key, b"v", px=int(ttl * 1000))
        acked = monotonic()
        # Reader A misses shortly before the key expires.
        await asyncio.sleep(max(0.0, sent + ttl - 0.02 - monotonic()))
        a = asyncio.create_task(cache.get(key))
        await sent_but_unanswered(cache)
        if monotonic() > sent + ttl - 0.002:
            await a
            continue  # the machine stalled: A may have read after the expiry
        # The loop is busy past the expiry; then reader B starts.
        time.sleep(max(0.0, acked + ttl + 0.008 - monotonic()))
        b = asyncio.create_task(cache.get(key))
        if await a != b"v":
            await b
            continue  # A's read ran after the expiry after all
        assert await b is None, "B started after the key expired"
        valid += 1
        if valid == TRIALS:
            return
    pytest.fail(f"only {valid} of {TRIALS} trials had A read before the expiry")


async def test_a_reader_after_an_outside_write_does_not_get_the_old_value(
    cache_factory: CacheFactory, redis_url: str, writer: aioredis.Redis, ns: str
) -> None:
    cache = await cache_factory()
    with redis.Redis.from_url(redis_url) as outside:
        for trial in range(TRIALS):
            key = f"{ns}k{trial}"
            await writer.set(key, b"old")
            a = asyncio.create_task(cache.get(key))
            await sent_but_unanswered(cache)
            # Blocking, as a busy loop would be: the reply and the push wait unread.
            outside.set(key, b"new")
            time.sleep(0.012)
            b = asyncio.create_task(cache.get(key))
            assert await a in (b"old", b"new")
            assert await b == b"new", "B started after the write was acknowledged"


async def test_a_joined_answer_is_dropped_once_it_has_expired(
    cache_factory: CacheFactory, ns: str
) -> None:
    """No drain can help here: the expiry push may never have been sent yet."""
    cache = await cache_factory()
    key = ns + "k"
    await cache.set(key, b"v", ttl=0.05)
    a = asyncio.create_task(cache.lookup(key))
    await sent_but_unanswered(cache)
    joined_at = monotonic()
    # B joins A's fetch; A's answer, when it comes, is already out of date for B.
    time.sleep(0.06)
    b = asyncio.create_task(cache.lookup(key))
    first = await a
    if first.value is None:
        pytest.skip("the machine stalled before A's read ran")
    assert first.expires_at is not None
    assert first.expires_at <= joined_at + 0.05
    assert (await b).value is None


async def test_a_late_reader_does_not_share_an_untracked_answer(
    cache_factory: CacheFactory,
    writer: aioredis.Redis,
    ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tracking down: no push would ever say the shared answer went stale."""
    cache = await cache_factory(
        reconnect_fast_window=0, reconnect_base_delay=30, reconnect_max_delay=30
    )
    key = ns + "k"
    await writer.set(key, b"old")
    (node,) = cache._topology.nodes.values()
    assert node.tracker._conn is not None
    node.tracker._conn.close()  # tracking lost; it stays down for this test
    assert not cache.health().tracking
    read_done, release = asyncio.Event(), asyncio.Event()
    run = cache._redis.run

    async def read_then_hold(*args: Any, **kwargs: Any) -> Any:
        result = await run(*args, **kwargs)
        read_done.set()
        await release.wait()  # A's answer arrives late, as on a busy loop
        return result

    monkeypatch.setattr(cache._redis, "run", read_then_hold)
    a = asyncio.create_task(cache.lookup(key))
    await asyncio.wait_for(read_done.wait(), 5)
    monkeypatch.setattr(cache._redis, "run", run)
    await writer.set(key, b"new")
    b = asyncio.create_task(cache.lookup(key))
    await asyncio.sleep(0)  # B has joined A's fetch
    release.set()
    assert (await a).value == b"old"
    assert (await b).value == b"new", "B started after the write; nothing could tell it"
