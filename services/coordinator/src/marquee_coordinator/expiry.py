"""The serving leader's lease deadlines, on its own monotonic clock.

Only the leader acts on these, and only by proposing `Expire` through the log;
the state machine then re-checks token, revision and epoch. Deadlines are
local and never replicated: a new leader restarts every one of them at full
TTL when its epoch is applied, so a lease can outlive its TTL across a
failover but never expire early (docs/coordinator-timing.md).

Every method takes `now` so the rules can be tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from marquee_coordinator.state import EventKind, Lease, LeaseEvent


@dataclass(frozen=True, slots=True)
class Due:
    """A lease whose deadline passed: what an Expire command must name."""

    name: str
    token: int
    revision: int


class Deadlines:
    def __init__(self) -> None:
        self._at: dict[str, tuple[Lease, float]] = {}
        # Expiries proposed and not yet resolved, so one lease is proposed once.
        self._proposed: set[Due] = set()

    def __len__(self) -> int:
        return len(self._at)

    def on_event(self, event: LeaseEvent, now: float) -> None:
        """Track a committed event, applied at local time `now`.

        Starting the deadline when the command is applied here, which is after
        the client sent it, keeps our deadline later than the client's own.
        """
        if event.kind in (EventKind.ACQUIRED, EventKind.RENEWED):
            self._at[event.lease.name] = (event.lease, now + event.lease.ttl)
        else:
            self._at.pop(event.lease.name, None)

    def restart_all(self, leases: Iterable[Lease], now: float) -> None:
        """Give every lease a full TTL from `now` (a new epoch, or a suspected pause)."""
        self._at = {lease.name: (lease, now + lease.ttl) for lease in leases}
        self._proposed.clear()

    def due(self, now: float) -> list[Due]:
        """Leases past their deadline that have no Expire in flight yet; marks them in flight."""
        found = []
        for lease, deadline in self._at.values():
            if deadline <= now:
                due = Due(lease.name, lease.token, lease.revision)
                if due not in self._proposed:
                    self._proposed.add(due)
                    found.append(due)
        return found

    def resolved(self, due: Due) -> None:
        """The Expire for `due` was applied, refused or lost: propose again if still due."""
        self._proposed.discard(due)

    def deadline(self, name: str) -> float | None:
        entry = self._at.get(name)
        return entry[1] if entry else None
