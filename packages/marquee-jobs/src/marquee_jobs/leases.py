"""Where periodic jobs get leadership: the coordinator's leases, and nothing else (K-8).

`LeaseSource` is the seam; `marquee_jobs.coordinator.CoordinatorLeases` is the one
implementation shipped. There is deliberately no database-lock or "first to insert
wins" fallback: a second election mechanism is what let periodic jobs silently not
run in the old system.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Lease(Protocol):
    """A held lease: stamp writes with `token`; `lost` is set once it can't be trusted."""

    @property
    def token(self) -> int: ...

    @property
    def lost(self) -> asyncio.Event: ...

    def valid(self) -> bool: ...


class LeaseBusy(Exception):
    """The lease could not be taken now (someone else holds it, or no answer): try later."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"lease {name!r} not acquired: {reason}")
        self.name = name


class LeaseSource(Protocol):
    def hold(self, name: str, ttl: float) -> AbstractAsyncContextManager[Lease]:
        """Hold `name` (kept alive in the background) for the block; raise LeaseBusy if taken."""
        ...
