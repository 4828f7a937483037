"""What a read answers (`Lookup`, `Layer`) and the single-flight fetch readers share.

A reader that joins a fetch whose read was already sent started after that read
ran: the key may have expired or changed in between. `still_valid` is the check
such a late joiner applies to the shared answer (issue 9); the cache drains the
tracking socket before joining, so a write it could have seen detaches the
fetch first (`Flight.invalidated`).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from time import monotonic


class Layer(enum.StrEnum):
    """Which layer answered a read."""

    L1 = "l1"
    """This process's L1."""
    L2 = "l2"
    """Redis (a tracked read, or an untracked one while tracking is down)."""
    LOADER = "loader"
    """The caller's loader (the backend of record), after Redis had no value."""


@dataclass(frozen=True, slots=True)
class Lookup:
    value: bytes | None
    """None: the key does not exist (a miss is not an error, C-4)."""
    ttl: float | None
    """Seconds a caller keeping its own L1 may cache this answer, provided it also
    follows the invalidation stream; None: not read under tracking, do not cache."""
    layer: Layer = Layer.L2
    expires_at: float | None = None
    """time.monotonic() after which this answer is known to be out of date (the
    key's Redis TTL, capped by l1_max_ttl, from when the read was sent); None:
    unknown."""

    @property
    def found(self) -> bool:
        return self.value is not None


class Flight:
    """One fetch of a key that concurrent readers share (single flight)."""

    __slots__ = ("future", "invalidated", "sent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[Lookup] = loop.create_future()
        self.future.add_done_callback(_retrieve)
        self.sent = False
        """Its read has been sent: a reader joining now started after the read ran,
        perhaps after the key changed or expired."""
        self.invalidated = False
        """Detached by a write, an invalidation or a reset of its key."""


def still_valid(flight: Flight, lookup: Lookup) -> bool:
    """May a reader that joined `flight` after its read was sent use its answer?

    Only an answer read under tracking (`ttl` set): an untracked one (tracking
    down) has no invalidation to say it went stale in between; and only while
    it has not expired or been invalidated since.
    """
    return (
        not flight.invalidated
        and lookup.ttl is not None
        and lookup.expires_at is not None
        and lookup.expires_at > monotonic()
    )


def _retrieve(future: asyncio.Future[Lookup]) -> None:
    # A flight nobody awaits any more (its callers were cancelled) must not log
    # "exception was never retrieved".
    if not future.cancelled():
        future.exception()
