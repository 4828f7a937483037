"""The serving leader's lease deadlines, on its own monotonic clock.

Only the leader acts on these, and only by proposing `Expire` through the log;
the state machine then re-checks token, revision and epoch. Deadlines are
local and never replicated: a new leader restarts every one of them at full
TTL when its epoch is applied, so a lease can outlive its TTL across a
failover but never expire early (docs/coordinator-timing.md).

Every method takes `now` so the rules can be tested without sleeping. The tick
thread owns the deadlines; the event loop thread touches them only through
`renew_locally` and `deadline`, under the same lock, so a local renewal and the
expiry scan never interleave.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from marquee_coordinator.state import EventKind, Lease, LeaseEvent


@dataclass(frozen=True, slots=True)
class Due:
    """A lease whose deadline passed: what an Expire command must name."""

    name: str
    token: int
    revision: int


# One lease's (token, revision, ttl, deadline): which grant and revision of its
# name the deadline is for. A plain tuple of numbers, no Lease and no NamedTuple:
# the garbage collector drops such an exact tuple from its lists at its first
# collection. A local renewal replaces the entry, so entries holding a Lease were
# tracked objects made at the renewal rate, and all lived into the oldest
# generation: with 20,000 leases that ran a full collection every ~5 s, of ~26
# ms with the GIL held (docs/coordinator-timing.md, "Garbage collection").
_Tracked = tuple[int, int, float, float]


def _tracked(lease: Lease, deadline: float) -> _Tracked:
    return (lease.token, lease.revision, lease.ttl, deadline)


class Deadlines:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[str, _Tracked] = {}
        # Expiries proposed and not yet resolved, so one lease is proposed once.
        self._proposed: set[Due] = set()
        # No deadline outside _proposed is earlier than this, so due() need not
        # look before it. The scan is O(leases) and ran every tick (50 ms) while
        # holding the GIL; with thousands of leases that was a steady share of a
        # core taken from the event loop. Renewals only move deadlines later, so
        # the bound stays true between scans without being touched.
        self._earliest = math.inf
        self.scans = 0  # full scans done: due() calls before the bound cost none

    def __len__(self) -> int:
        return len(self._at)

    def on_event(self, event: LeaseEvent, now: float) -> None:
        """Track a committed event, applied at local time `now`.

        Starting the deadline when the command is applied here, which is after
        the client sent it, keeps our deadline later than the client's own.
        """
        with self._lock:
            if event.kind in (EventKind.ACQUIRED, EventKind.RENEWED):
                deadline = now + event.lease.ttl
                self._at[event.lease.name] = _tracked(event.lease, deadline)
                self._earliest = min(self._earliest, deadline)
            else:
                self._at.pop(event.lease.name, None)

    def restart_all(self, leases: Iterable[Lease], now: float) -> None:
        """Give every lease a full TTL from `now` (a new epoch, or a suspected pause)."""
        at = {lease.name: _tracked(lease, now + lease.ttl) for lease in leases}
        earliest = min((entry[3] for entry in at.values()), default=math.inf)
        with self._lock:
            self._at = at
            self._proposed.clear()
            self._earliest = earliest

    def due(self, now: float) -> list[Due]:
        """Leases past their deadline that have no Expire in flight yet; marks them in flight."""
        found: list[Due] = []
        with self._lock:
            if now < self._earliest:
                return found
            self.scans += 1
            earliest = math.inf
            for name, (token, revision, _, deadline) in self._at.items():
                if deadline <= now:
                    due = Due(name, token, revision)
                    if due not in self._proposed:
                        self._proposed.add(due)
                        found.append(due)
                elif deadline < earliest:
                    earliest = deadline
            # Those due now are in _proposed until resolved(), which scans again.
            self._earliest = earliest
        return found

    def resolved(self, due: Due) -> None:
        """The Expire for `due` was applied, refused or lost: propose again if still due."""
        with self._lock:
            self._proposed.discard(due)
            self._earliest = -math.inf

    def deadline(self, name: str) -> float | None:
        with self._lock:
            entry = self._at.get(name)
        return entry[3] if entry else None

    def renew_locally(self, lease: Lease, now: float) -> bool:
        """Restart `lease`'s deadline at full TTL without a log entry, if nothing forbids it.

        Refused (False: renew through the log instead) when the deadline we
        track is for another grant or revision of the name, when it has passed,
        or when an Expire for the lease is in flight: a local renewal moves no
        revision, so that Expire would still apply. A renewal through the log
        does move it and makes the Expire refused.
        """
        with self._lock:
            entry = self._at.get(lease.name)
            if entry is None:
                return False
            token, revision, ttl, deadline = entry
            if token != lease.token or revision != lease.revision:
                return False
            if deadline <= now:
                return False
            # The set is empty but during an expiry; a Due costs ~1 us a renewal to build.
            if self._proposed and Due(lease.name, token, revision) in self._proposed:
                return False
            self._at[lease.name] = (token, revision, ttl, now + ttl)
            return True
