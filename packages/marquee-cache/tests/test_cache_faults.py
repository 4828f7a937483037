"""Redis killed, restarted and frozen under the cache (C-3, C-5): fail fast, never stale."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from time import monotonic
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.backoff import ConstantBackoff

from marquee_cache import BreakerState, Cache, CacheConfig, CacheUnavailable
from marquee_cache.connection import ConnectionLost, RespConnection
from marquee_cache.tracking import Tracker
from marquee_cache_support import FAST, SLACK, CacheFactory, until
from marquee_localservers import RedisServer, free_port


async def test_kill_and_restart_mid_traffic(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False)  # a restart comes back empty
    cache = await cache_factory(server.url, **FAST)
    keys = [f"k{i}" for i in range(20)]
    async with aioredis.Redis.from_url(server.url) as outside:
        await outside.mset({k: b"before" for k in keys})
    assert await cache.get_many(keys) == dict.fromkeys(keys, b"before")

    restarted_at = float("inf")
    stale: list[str] = []
    errors: list[float] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            for key in keys:
                started = monotonic()
                try:
                    value = await cache.get(key)
                except CacheUnavailable:
                    errors.append(monotonic() - started)
                    await asyncio.sleep(0.005)
                    continue
                if value == b"before" and started > restarted_at:
                    stale.append(key)  # Redis lost it in the restart: L1 must have too
            await asyncio.sleep(0)

    readers = [asyncio.create_task(traffic()) for _ in range(4)]
    await asyncio.sleep(0.2)
    server.kill()
    await until(lambda: not cache.health().tracking)
    assert len(cache._l1) == 0, "losing tracking flushes L1"
    await until(lambda: cache.health().breaker is BreakerState.OPEN)
    assert cache.health().status == "unavailable"
    # Fails fast: refused by the open breaker, without trying Redis (no timing bound).
    with pytest.raises(CacheUnavailable, match="circuit breaker is open"):
        await cache.get("k0")

    await asyncio.sleep(0.3)
    server.start()
    restarted_at = monotonic()
    await until(lambda: cache.health().status == "ok")
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*readers)

    assert errors
    assert max(errors) < FAST["command_timeout"] + SLACK, "every failure is bounded"
    assert stale == []
    assert await cache.get("k0") is None
    await cache.set("k0", b"after")
    # The write's own invalidation may still be in flight; a read sent before it is
    # applied is rightly not cached (C-11), so order the two first.
    await cache.sync()
    assert await cache.get("k0") == b"after"
    assert cache.peek("k0") == b"after", "L1 is in use again"
    assert cache.health().tracking_connects == 2


async def test_a_read_cut_off_by_a_lost_tracking_connection_is_retried_untracked(
    cache_factory: CacheFactory, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracking connection, not Redis, failed: the read is answered, the breaker unmoved."""
    cache = await cache_factory(command_timeout=5)  # about classification, not speed
    key = ns + "k"
    await cache.set(key, b"v")
    (node,) = cache._topology.nodes.values()
    tracker = node.tracker
    send = tracker.send

    def send_then_cut(*commands: tuple[str | bytes | int, ...]) -> list[asyncio.Future[Any]]:
        futures = send(*commands)
        if commands[0][0] == "GET" and tracker._conn is not None:
            tracker._conn.close(ConnectionLost("cut under a read"))  # as a kill -9 would
        return futures

    monkeypatch.setattr(tracker, "send", send_then_cut)
    lookup = await cache.lookup(key)
    assert lookup.value == b"v"
    assert lookup.ttl is None, "answered untracked, not cached"
    assert node.breaker._failures == 0, "a lost tracking connection is not a Redis failure"
    assert node.breaker.state is BreakerState.CLOSED


@pytest.mark.timeout(90)
async def test_reads_recover_as_soon_as_a_restarted_redis_answers(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """kill -9 and restart: the breaker closes on tracking's reconnect, not on its timer.

    reset_timeout is 30 s here, so reads that work again within seconds show the
    breaker was closed by a successful probe. The precise figure is printed.
    """
    server = redis_server_factory(persistent=False)
    settings = {**FAST, "breaker_reset_timeout": 30.0}
    del settings["reconnect_max_delay"]  # the default schedule is the one measured
    cache = await cache_factory(server.url, **settings)
    keys = [f"k{i}" for i in range(10)]
    await asyncio.gather(*(cache.set(k, b"v") for k in keys))
    failures: list[float] = []
    successes: list[float] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            for key in keys:
                try:
                    await cache.get(key)
                except CacheUnavailable:
                    failures.append(monotonic())
                else:
                    successes.append(monotonic())
                await asyncio.sleep(0.001)

    readers = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        await until(lambda: len(successes) > 20)
        server.kill()
        await until(lambda: cache.health().breaker is BreakerState.OPEN)
        await asyncio.sleep(0.1)
        server.start()  # blocks (the loop too) until Redis answers PING
        answering = monotonic()
        await until(lambda: cache.health().breaker is BreakerState.CLOSED, timeout=10)
        closed = monotonic()
        await until(lambda: any(t > closed for t in successes), timeout=10)
    finally:
        stop.set()
        await asyncio.gather(*readers)
    after = [t - answering for t in failures if t >= answering]
    last_failure = max(after, default=0.0)
    first_success = min(t for t in successes if t >= answering) - answering
    print(
        f"\nafter Redis answered again: breaker seen closed by "
        f"{(closed - answering) * 1e3:.1f} ms, "
        f"first read served at {first_success * 1e3:.1f} ms, last failure at "
        f"{last_failure * 1e3:.1f} ms ({len(after)} failures after it answered)"
    )
    assert cache.health().status == "ok"
    assert last_failure < 5.0, "sanity bound only: the breaker's own timer is 30 s"


async def test_heartbeat_catches_a_silent_loss(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """SIGSTOP freezes Redis: the socket stays open, only the heartbeat can tell."""
    server = redis_server_factory(persistent=False)
    cache = await cache_factory(server.url, **FAST)
    await cache.set("k", b"v")
    assert await cache.get("k") == b"v"
    assert cache.peek("k") == b"v"
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        frozen = monotonic()
        await until(lambda: not cache.health().tracking, timeout=10)
        detected = monotonic() - frozen
        assert detected < FAST["heartbeat_interval"] + FAST["heartbeat_timeout"] + SLACK
        assert cache.peek("k") is False, "L1 flushed and bypassed"
        started = monotonic()
        with pytest.raises(CacheUnavailable):
            await cache.get("k")
        assert monotonic() - started < FAST["command_timeout"] + SLACK
    finally:
        os.kill(server.pid, signal.SIGCONT)
    await until(lambda: cache.health().status == "ok")
    assert await cache.get("k") == b"v"
    print(f"\nsilent loss detected after {detected * 1e3:.0f} ms")


async def test_tracking_down_reads_are_answered_but_not_cached(
    cache_factory: CacheFactory, redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = redis_server_factory(persistent=False)
    # A reconnect slow enough to observe the degraded state.
    cache = await cache_factory(server.url, **FAST, reconnect_fast_window=0)
    (node,) = cache._topology.nodes.values()
    node.tracker._backoff = ConstantBackoff(0.5)  # type: ignore[assignment]
    await cache.set("k", b"v")
    async with aioredis.Redis.from_url(server.url) as outside:
        # Kill only the tracking connection; Redis itself stays up.
        clients = await outside.client_list()
        (tracking,) = [c for c in clients if c["name"] == cache.config.client_name]
        await outside.client_kill_filter(_id=tracking["id"])
    await until(lambda: not cache.health().tracking)
    assert cache.health().status == "degraded"
    lookup = await cache.lookup("k")
    assert lookup.value == b"v"
    assert lookup.ttl is None, "untracked: answered, not cached"
    assert cache.peek("k") is False
    await until(lambda: cache.health().status == "ok")
    assert await cache.get("k") == b"v"
    assert cache.peek("k") == b"v"


async def test_close_awaits_background_tasks(redis_url: str) -> None:
    cache = await Cache.connect(redis_url)
    await cache.get("whatever")
    tasks = set(cache._tasks)
    await cache.close()
    assert all(t.done() for t in tasks)
    assert all(node.tracker._task is None for node in cache._topology.nodes.values())


async def test_tracking_outlives_a_thousand_failed_reconnects() -> None:
    """A long outage: the reconnect loop keeps trying (its backoff once overflowed at ~1000)."""
    config = CacheConfig(
        port=free_port(), reconnect_base_delay=0.0, reconnect_max_delay=0.0, connect_timeout=0.2
    )
    tracker = Tracker(config, lambda _keys: None, lambda: None, lambda _reason: None)
    tracker.start()
    try:
        async with asyncio.timeout(30):
            while tracker.failed_connects < 1100:
                await asyncio.sleep(0.01)
        assert not tracker.up
        assert tracker.last_error is not None
        assert "connect" in tracker.last_error
    finally:
        await tracker.close()


async def test_a_cancel_during_wait_closed_is_not_swallowed(redis_url: str) -> None:
    """Once swallowed, a tracker's close() waited for a reconnect loop that never ended."""
    config = CacheConfig.from_url(redis_url)
    conn = await RespConnection.open(config.host, config.port, lambda _f: None, lambda _r: None)
    closing = asyncio.create_task(conn.wait_closed())
    await asyncio.sleep(0)  # it now waits for the reader to end
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closing.cancelled()
    assert not conn.is_open


async def test_a_loop_held_off_the_cpu_after_a_ping_keeps_its_connection(redis_url: str) -> None:
    """The process stalls right after a heartbeat PING (a loaded machine): when it runs
    again, the PING's deadline timer runs before the reply already received is read.
    That must not count as a lost connection (it used to, flushing L1 for nothing)."""
    config = CacheConfig.from_url(redis_url, heartbeat_interval=0.05, heartbeat_timeout=0.1)
    downs: list[str] = []
    tracker = Tracker(config, lambda _keys: None, lambda: None, downs.append)
    tracker.start()
    try:
        await until(lambda: tracker.up)
        for _ in range(5):
            conn = tracker._conn
            assert conn is not None
            # Wait (bounded) until a PING is in flight, then hold the loop past its deadline.
            async with asyncio.timeout(5):
                while not conn._pending:
                    await asyncio.sleep(0)
            # The stall under test: the whole loop held, as by a busy machine.
            time.sleep(3 * config.heartbeat_timeout)
            await asyncio.sleep(2 * config.heartbeat_interval)
        assert downs == []
        assert tracker.up
        assert tracker.connects == 1
    finally:
        await tracker.close()
