"""The invalidation feed behind WatchInvalidations: one subscription to the library's
events, numbered once, fanned out to every watcher with its prefix filter.

Sequence numbers: one counter per gateway instance, bumped for every event in
the order the library applied it to L1. A read that snapshots `sequence` before
it starts is therefore older than every event numbered above the snapshot, which
is what a remote L1 needs to drop a late fill (GetResponse.sequence).

Flushed(TRACKING_LOST) suspends remote L1s; Resumed is sent once the health
loop sees tracking back (the library emits no event for that).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from marquee.cache.v1 import cache_pb2
from marquee_cache import Cache, Invalidation

Response = cache_pb2.WatchInvalidationsResponse

WATCHER_QUEUE = 4096
"""Events a watcher may fall behind by before its backlog becomes one flush."""

_FLUSH_REASONS = {
    "flushall": cache_pb2.FLUSH_REASON_SERVER_FLUSH,
    "tracking_lost": cache_pb2.FLUSH_REASON_TRACKING_LOST,
    "overflow": cache_pb2.FLUSH_REASON_OVERFLOW,
}


class Watcher:
    """One WatchInvalidations stream: a bounded queue of ready-to-send messages."""

    def __init__(self, feed: InvalidationFeed, prefixes: Sequence[str]) -> None:
        self._feed = feed
        self.prefixes = tuple(prefixes)
        self._queue: asyncio.Queue[Response | None] = asyncio.Queue(WATCHER_QUEUE)

    def wants_key(self, key: str) -> bool:
        return not self.prefixes or key.startswith(self.prefixes)

    def wants_prefix(self, prefix: str) -> bool:
        # Overlap either way: "user:" hits a watcher of "user:1", and "u" hits "user:".
        return not self.prefixes or any(
            prefix.startswith(p) or p.startswith(prefix) for p in self.prefixes
        )

    def offer(self, message: Response) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            # Dropping everything is always safe for a remote L1; losing one key is not.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(
                self._feed.message(
                    flushed=cache_pb2.Flushed(
                        reason=cache_pb2.FLUSH_REASON_OVERFLOW, suspend_l1=self._feed.suspended
                    )
                )
            )

    def end(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Response]:
        while (message := await self._queue.get()) is not None:
            yield message


class InvalidationFeed:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self.instance_id = uuid.uuid4().hex
        self.sequence = 0
        self.suspended = not cache.health().tracking
        self._watchers: set[Watcher] = set()
        self._closed = False

    async def run(self) -> None:
        """Apply the library's events until cancelled (an owned task of the service).

        As a synchronous listener, not a queue read by this task: each event is
        numbered in the push handler that applied it to L1, one pass of the event
        loop earlier, which under saturation is what WatchInvalidations gains.
        """
        stop = self._cache.on_invalidation(self._apply)
        try:
            await asyncio.get_running_loop().create_future()  # until cancelled
        finally:
            stop()

    def message(
        self,
        *,
        invalidated: cache_pb2.Invalidated | None = None,
        flushed: cache_pb2.Flushed | None = None,
        resumed: cache_pb2.Resumed | None = None,
    ) -> Response:
        """A new event (exactly one of the three) with the next sequence number."""
        self.sequence += 1
        emitted_at = Timestamp()
        emitted_at.GetCurrentTime()
        return Response(
            sequence=self.sequence,
            instance_id=self.instance_id,
            emitted_at=emitted_at,
            invalidated=invalidated,
            flushed=flushed,
            resumed=resumed,
        )

    def _apply(self, event: Invalidation) -> None:
        if event.flush:
            if event.reason == "closed":
                self.close()
                return
            lost = event.reason == "tracking_lost"
            self.suspended = self.suspended or lost
            reason = _FLUSH_REASONS.get(event.reason, cache_pb2.FLUSH_REASON_SERVER_FLUSH)
            self._broadcast(
                self.message(flushed=cache_pb2.Flushed(reason=reason, suspend_l1=self.suspended))
            )
            return
        message = self.message(invalidated=cache_pb2.Invalidated(keys=event.keys))
        for watcher in self._watchers:
            if not watcher.prefixes:
                watcher.offer(message)
            elif keys := [k for k in event.keys if watcher.wants_key(k)]:
                filtered = Response()
                filtered.CopyFrom(message)
                filtered.invalidated.keys[:] = keys
                watcher.offer(filtered)

    def prefix_deleted(self, prefix: str) -> None:
        """DeleteByPrefix ran here: tell watchers at once (Redis only pushes tracked keys)."""
        message = self.message(invalidated=cache_pb2.Invalidated(prefixes=[prefix]))
        for watcher in self._watchers:
            if watcher.wants_prefix(prefix):
                watcher.offer(message)

    def tracking_state(self, up: bool) -> None:
        """Called by the health loop: ends a suspension once tracking is back."""
        if self.suspended and up:
            self.suspended = False
            self._broadcast(self.message(resumed=cache_pb2.Resumed()))

    def _broadcast(self, message: Response) -> None:
        for watcher in self._watchers:
            watcher.offer(message)

    @contextlib.contextmanager
    def watch(self, prefixes: Sequence[str]) -> Iterator[Watcher]:
        """Subscribe; the first message is the STREAM_STARTED resync point."""
        watcher = Watcher(self, prefixes)
        if self._closed:
            watcher.end()
        else:
            started = cache_pb2.Flushed(
                reason=cache_pb2.FLUSH_REASON_STREAM_STARTED, suspend_l1=self.suspended
            )
            watcher.offer(self.message(flushed=started))
            self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)

    def close(self) -> None:
        """End every stream cleanly (service stopping) and refuse new ones."""
        self._closed = True
        for watcher in self._watchers:
            watcher.end()
        self._watchers.clear()

    def __len__(self) -> int:
        return len(self._watchers)
