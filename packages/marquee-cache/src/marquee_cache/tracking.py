"""The tracking connection's lifecycle: connect, CLIENT TRACKING, heartbeat, reconnect.

Design (see README): tracked reads are sent on this connection itself, in the
default tracking mode, and Redis answers `invalidate` pushes in-band (RESP3). That
works on Redis 6+ and, per its documentation, on Dragonfly, which lacks BCAST and
REDIRECT (untested against Dragonfly: no binary on these machines). The writer is
never this connection, so NOLOOP is not needed and no invalidation is lost.

While the connection is down, `up` is False and the owner must flush and bypass
L1: invalidations may have been missed. A heartbeat PING with a deadline catches
a silent loss (a dead peer behind a healthy-looking socket gives no EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any

import hiredis
from redis.backoff import ExponentialWithJitterBackoff

from marquee_cache.config import CacheConfig
from marquee_cache.connection import ConnectionLost, RespConnection

log = logging.getLogger(__name__)

InvalidateHandler = Callable[[list[str] | None], None]
"""Called with the invalidated keys, or None for a flush (FLUSHALL/FLUSHDB)."""


class TrackingUnavailable(ConnectionError):
    pass


# Enough doublings of any base delay to reach any cap.
_BACKOFF_STEPS = 32


class Tracker:
    def __init__(
        self,
        config: CacheConfig,
        on_invalidate: InvalidateHandler,
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
    ) -> None:
        self._config = config
        self._on_invalidate = on_invalidate
        self._on_up = on_up
        self._on_down = on_down
        self._conn: RespConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = ExponentialWithJitterBackoff(
            cap=config.reconnect_max_delay, base=config.reconnect_base_delay
        )
        self._up_event = asyncio.Event()
        self._closing = False
        self.connects = 0
        self.failed_connects = 0
        self.last_error: str | None = None

    @property
    def up(self) -> bool:
        return self._conn is not None and self._conn.is_open

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="marquee-cache-tracker")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # never swallows a cancel of our own
            self._task = None
        if self._conn is not None:
            await self._conn.wait_closed()
            self._conn = None

    async def wait_up(self) -> None:
        """Until tracking is up; bound it with asyncio.timeout."""
        await self._up_event.wait()

    def send(self, *commands: tuple[str | bytes | int, ...]) -> list[asyncio.Future[Any]]:
        conn = self._conn
        if conn is None or not conn.is_open:
            raise TrackingUnavailable("tracking connection is down")
        return conn.send(*commands)

    def drain(self) -> None:
        """Apply, now, the pushes (and replies) the kernel already holds for us."""
        conn = self._conn
        if conn is not None:
            conn.drain()

    def _retry_delay(self, failures: int, outage_started: float) -> float:
        """Jittered exponential backoff, but short early in an outage (a restart)."""
        delay = self._backoff.compute(failures)
        if monotonic() - outage_started < self._config.reconnect_fast_window:
            delay = min(delay, self._config.reconnect_fast_delay)
        return delay

    async def _supervise(self) -> None:
        failures = 0
        outage_started = monotonic()
        while True:
            try:
                conn = await self._connect()
            except (OSError, TimeoutError, hiredis.HiredisError) as exc:
                self.last_error = f"connect: {exc!r}"
                self.failed_connects += 1
                # Bounded: the backoff computes 2**failures as a float, which
                # overflows after ~1000 failed connects (a long outage).
                failures = min(failures + 1, _BACKOFF_STEPS)
                await asyncio.sleep(self._retry_delay(failures, outage_started))
                continue
            failures = 0
            self._conn = conn
            self.connects += 1
            self._up_event.set()
            self._on_up()
            try:
                await self._heartbeat(conn)
            finally:
                conn.close()
                await conn.wait_closed()
            outage_started = monotonic()
            await asyncio.sleep(self._retry_delay(1, outage_started))

    async def _connect(self) -> RespConnection:
        cfg = self._config
        async with asyncio.timeout(cfg.connect_timeout):
            established = False

            def on_lost(reason: BaseException | None) -> None:
                # Runs synchronously inside RespConnection.close(), before any other
                # task: the owner flushes L1 before a single stale hit can be served.
                self.last_error = f"lost: {reason!r}"
                self._up_event.clear()
                if established and not self._closing:
                    self._on_down("tracking_lost")

            conn = await RespConnection.open(cfg.host, cfg.port, self._on_push, on_lost)
            try:
                hello: list[str | bytes | int] = ["HELLO", 3]
                if cfg.password is not None:
                    hello += ["AUTH", cfg.username or "default", cfg.password]
                await conn.call(*hello)
                await conn.call("CLIENT", "SETNAME", cfg.client_name)
                if cfg.db:
                    await conn.call("SELECT", cfg.db)
                await conn.call("CLIENT", "TRACKING", "ON")
                established = True
            except BaseException:
                conn.close()
                await conn.wait_closed()
                raise
        return conn

    async def _heartbeat(self, conn: RespConnection) -> None:
        """Returns when the connection is lost, by EOF/error or a missed PING deadline."""
        cfg = self._config
        while conn.is_open:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cfg.heartbeat_interval):
                    await conn.closed.wait()
            if conn.closed.is_set():
                return
            try:
                await self._ping(conn)
            except (TimeoutError, ConnectionLost, OSError) as exc:
                conn.close(TimeoutError(f"heartbeat failed: {exc!r}"))
                return

    async def _ping(self, conn: RespConnection) -> None:
        """PING within the heartbeat deadline, or raise TimeoutError (ConnectionLost if lost)."""
        (pong,) = conn.send(("PING",))
        try:
            try:
                async with asyncio.timeout(self._config.heartbeat_timeout):
                    await asyncio.shield(pong)
            except TimeoutError:
                # A loop runs its timers before it reads its sockets: after the whole
                # process was held off the CPU (a loaded machine), this deadline fired
                # before the reply that had arrived was read, and a live connection
                # was dropped with its L1. Read what has arrived before deciding.
                conn.drain()
                if not pong.done():
                    raise
            reply = pong.result()
            if isinstance(reply, hiredis.ReplyError):
                raise reply
        finally:
            # Given up on (or cancelled): the reply, if it comes, is dropped unread.
            pong.cancel()

    def _on_push(self, frame: list[Any]) -> None:
        if len(frame) < 2 or frame[0] not in (b"invalidate", "invalidate"):
            return
        keys = frame[1]
        if keys is None:
            self._on_invalidate(None)
        else:
            self._on_invalidate([_decode(k) for k in keys])


def _decode(key: bytes | str) -> str:
    return key if isinstance(key, str) else key.decode("utf-8", "surrogateescape")
