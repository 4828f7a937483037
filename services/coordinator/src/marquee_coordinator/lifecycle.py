"""Ending long waits and streams as soon as the node is asked to stop.

gRPC's drain waits for running calls; a Watch or a Campaign never ends by
itself, so without this every planned restart would wait out the full grace
period. On stop they end with UNAVAILABLE and clients reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from marquee_platform import errors

T = TypeVar("T")

STOPPING_MESSAGE = "this coordinator node is shutting down; reconnect to the leader"


class Stopping:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        # Tasks of streams now waiting for their next item, and those set() cancelled.
        self._waiting: set[asyncio.Task[object]] = set()
        self._cancelled: set[asyncio.Task[object]] = set()

    def set(self) -> None:
        self._event.set()
        for task in self._waiting:
            self._cancelled.add(task)
            task.cancel()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` unless the node starts stopping first (then UNAVAILABLE)."""
        work = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not work.done():
                work.cancel()
        if work.cancelled() or not work.done():
            raise errors.Unavailable(STOPPING_MESSAGE)
        return work.result()

    async def iterate(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Items of `source` until it ends or the node starts stopping (then UNAVAILABLE).

        Unlike run(), no task per item: a KeepAlive stream carries thousands of
        items a second. While the stream waits for its next item set() cancels
        it; while it is busy elsewhere (a renewal committing) it stops before
        asking for the next one. Both on the event loop, so nothing slips between.
        """
        task = asyncio.current_task()
        assert task is not None
        while True:
            if self._event.is_set():
                raise errors.Unavailable(STOPPING_MESSAGE)
            self._waiting.add(task)
            try:
                item = await anext(source)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if task not in self._cancelled:
                    raise
                self._cancelled.discard(task)
                task.uncancel()
                raise errors.Unavailable(STOPPING_MESSAGE) from None
            finally:
                self._waiting.discard(task)
            yield item
