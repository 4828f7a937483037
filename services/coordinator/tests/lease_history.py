"""History checkers for lease safety (K-2): no two holders of a name overlap, tokens only grow."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from marquee_coordinator.state import EventKind, Lease, LeaseEvent


def check_events(events: Iterable[LeaseEvent]) -> None:
    """Replay a committed event stream: every grant is of a free name, with a larger token."""
    held: dict[str, Lease] = {}
    last_token: dict[str, int] = {}
    last_revision = None
    for event in events:
        if last_revision is not None:
            assert event.revision == last_revision + 1, f"revision gap before {event}"
        last_revision = event.revision
        lease = event.lease
        current = held.get(lease.name)
        if event.kind is EventKind.ACQUIRED:
            assert current is None, f"{lease} granted while {current} held"
            assert lease.token > last_token.get(lease.name, 0), f"token did not grow: {lease}"
            last_token[lease.name] = lease.token
            held[lease.name] = lease
        else:
            assert current is not None, f"{event.kind} of a lease nobody holds: {lease}"
            assert (current.holder, current.token) == (lease.holder, lease.token), (
                f"{event.kind} names {lease}, held is {current}"
            )
            if event.kind is EventKind.RENEWED:
                held[lease.name] = lease
            else:
                del held[lease.name]


@dataclass(frozen=True)
class Hold:
    """A client's belief: it held `name` with `token` from `start` until `end` (its own clock)."""

    name: str
    holder: str
    token: int
    start: float
    end: float


def check_holds(holds: Iterable[Hold]) -> None:
    """Client-side windows, measured on one clock: distinct grants of a name never overlap
    and their tokens grow in time order."""
    by_name: dict[str, list[Hold]] = {}
    for hold in holds:
        by_name.setdefault(hold.name, []).append(hold)
    for name, windows in by_name.items():
        # Merge the renewals of one grant into one window.
        grants: dict[tuple[str, int], Hold] = {}
        for w in windows:
            key = (w.holder, w.token)
            g = grants.get(key)
            grants[key] = (
                w
                if g is None
                else Hold(name, w.holder, w.token, min(g.start, w.start), max(g.end, w.end))
            )
        ordered = sorted(grants.values(), key=lambda g: g.start)
        for before, after in itertools.pairwise(ordered):
            assert after.start >= before.end, f"{name}: {after} overlaps {before}"
            assert after.token > before.token, f"{name}: token went {before.token} -> {after.token}"
