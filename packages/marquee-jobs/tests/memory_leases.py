"""A test double of the coordinator's leases: one holder per name, tokens growing per name.

Tests only: shipping an in-process lease would be a second election mechanism (K-8).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from marquee_jobs import Lease, LeaseBusy


class MemoryLease:
    def __init__(self, token: int) -> None:
        self._token = token
        self._lost = asyncio.Event()

    @property
    def token(self) -> int:
        return self._token

    @property
    def lost(self) -> asyncio.Event:
        return self._lost

    def valid(self) -> bool:
        return not self._lost.is_set()


class MemoryLeases:
    def __init__(self) -> None:
        self.holders: dict[str, MemoryLease] = {}
        self.tokens: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, name: str, ttl: float) -> AsyncIterator[Lease]:
        if name in self.holders:
            raise LeaseBusy(name, "held")
        token = self.tokens[name] = self.tokens.get(name, 0) + 1
        lease = self.holders[name] = MemoryLease(token)
        try:
            yield lease
        finally:
            if self.holders.get(name) is lease:
                del self.holders[name]

    def expire(self, name: str) -> int:
        """The coordinator expires the lease (its holder stopped renewing); returns its token."""
        lease = self.holders.pop(name)
        lease.lost.set()
        return lease.token
