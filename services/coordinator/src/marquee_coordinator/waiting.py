"""Acquire that waits for a held name: Acquire with wait_timeout, and Campaign.

Waiters on one node queue in arrival order (asyncio.Lock is FIFO): only the
first tries the name, so candidates are elected in the order they came. The
queue is this node's; after a failover the waiters reconnect in a new order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from marquee_coordinator.errors import EventsCompacted, LeaseHeld
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.state import EventKind, Lease

FREED = (EventKind.RELEASED, EventKind.EXPIRED)


class WaitQueues:
    def __init__(self) -> None:
        self._queues: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[None]:
        lock, users = self._queues.get(name, (asyncio.Lock(), 0))
        self._queues[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._queues[name]
            if users == 1:
                del self._queues[name]
            else:
                self._queues[name] = (lock, users - 1)


async def acquire_when_free(
    node: LeaseNode,
    queues: WaitQueues,
    name: str,
    holder: str,
    ttl: float,
    request_id: str = "",
    value: bytes = b"",
) -> Lease:
    """Acquire `name`, waiting (without bound: the caller sets the deadline) while it is held.

    A refused acquire is not remembered under its request id, so each retry may
    reuse it; a grant is, so a retry after a lost answer gets the same token.
    """
    async with queues.turn(name):
        while True:
            # Read before trying: a release after our refused attempt is then in the watch.
            since = node.view().revision
            try:
                return await node.acquire(name, holder, ttl, request_id, value)
            except LeaseHeld:
                pass
            await _until_freed(node, name, since)


async def _until_freed(node: LeaseNode, name: str, since: int) -> None:
    try:
        async for event in node.watch(since):
            if event.lease.name == name and event.kind in FREED:
                return
    except EventsCompacted:
        return  # too far behind to tell: simply try again
