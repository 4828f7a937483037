"""Invalidation events for subscribers (the gateway's WatchInvalidations stream).

Each subscriber has its own bounded queue. A subscriber that falls behind loses
its backlog and receives one flush event instead: for a remote L1, "drop
everything" is always a safe replacement for a run of key invalidations.

A listener (`InvalidationHub.listen`) is instead called synchronously, in the
push handler, as each event is applied: no queue and no task wake-up in between,
which under saturation is one pass of the event loop's ready queue saved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic, time
from types import TracebackType


@dataclass(frozen=True, slots=True)
class Invalidation:
    keys: tuple[str, ...] = ()
    flush: bool = False
    """True: drop every cached key (FLUSHALL/FLUSHDB, tracking lost, subscriber overflow)."""
    reason: str = "write"
    at: float = field(default_factory=monotonic)
    """time.monotonic() when the push was processed (for delay measurements);
    also readable as `at_monotonic`. `at_wall` is the same instant by the wall clock."""
    at_wall: float = field(default_factory=time)
    """time.time() when the push was processed (for logs and other processes)."""
    dropped: int = 0
    """L1 entries this event removed: 0 says L1 held none of `keys` (for a flush,
    L1 was empty). -1: unknown (an overflow flush stands for events it replaced)."""
    dropped_keys: tuple[str, ...] = ()
    """The ones among `keys` whose L1 entry this event removed."""

    @property
    def at_monotonic(self) -> float:
        return self.at


class InvalidationStream:
    """`async for event in stream`; also an async context manager that unsubscribes."""

    def __init__(self, hub: InvalidationHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Invalidation | None] = asyncio.Queue(maxsize)

    def offer(self, event: Invalidation) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(Invalidation(flush=True, reason="overflow", dropped=-1))

    def __aiter__(self) -> InvalidationStream:
        return self

    async def __anext__(self) -> Invalidation:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Unsubscribe; a pending `async for` ends."""
        if self._hub.discard(self):
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def __aenter__(self) -> InvalidationStream:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


Listener = Callable[[Invalidation], None]

log = logging.getLogger(__name__)


class InvalidationHub:
    def __init__(self) -> None:
        self._streams: set[InvalidationStream] = set()
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event)` for every event, synchronously; returns the undo."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def subscribe(self, maxsize: int = 1024) -> InvalidationStream:
        stream = InvalidationStream(self, maxsize)
        self._streams.add(stream)
        return stream

    def discard(self, stream: InvalidationStream) -> bool:
        if stream in self._streams:
            self._streams.remove(stream)
            return True
        return False

    def publish(self, event: Invalidation) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # Runs inside the tracking connection's push handler: a listener's
                # bug must not end the connection (and flush L1) with it.
                log.exception("marquee-cache: an invalidation listener failed")
        for stream in self._streams:
            stream.offer(event)

    def close_all(self) -> None:
        for stream in list(self._streams):
            stream.close()

    def __len__(self) -> int:
        return len(self._streams)
