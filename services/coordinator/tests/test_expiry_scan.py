"""Deadlines.due() skips its O(leases) scan until the earliest deadline it can act on.

The bound must never hide an expiry: random operation sequences are checked
against a reference that scans on every call, as due() did before the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from marquee_coordinator.expiry import Deadlines, Due
from marquee_coordinator.state import EventKind, Lease, LeaseEvent


@dataclass
class Reference:
    """The deadlines as a plain table, scanned whole on every due()."""

    at: dict[str, tuple[Lease, float]] = field(default_factory=dict)
    proposed: set[Due] = field(default_factory=set)

    def due(self, now: float) -> list[Due]:
        found = []
        for lease, deadline in self.at.values():
            due = Due(lease.name, lease.token, lease.revision)
            if deadline <= now and due not in self.proposed:
                self.proposed.add(due)
                found.append(due)
        return found

    def renew_locally(self, lease: Lease, now: float) -> bool:
        entry = self.at.get(lease.name)
        if entry is None or entry[0] != lease or entry[1] <= now:
            return False
        if Due(lease.name, lease.token, lease.revision) in self.proposed:
            return False
        self.at[lease.name] = (lease, now + lease.ttl)
        return True


def _lease(name: str, revision: int, ttl: float) -> Lease:
    return Lease(name, "holder", 1, ttl, revision=revision)


def test_no_scan_before_the_earliest_deadline() -> None:
    deadlines = Deadlines()
    for i in range(100):
        lease = _lease(f"job{i}", i + 1, 10.0)
        deadlines.on_event(LeaseEvent(i + 1, EventKind.ACQUIRED, lease), now=100.0)
    assert deadlines.due(100.0) == []
    scans = deadlines.scans
    for step in range(1, 200):  # holders renewing; the tick asks every 50 ms
        now = 100.0 + step * 0.05
        lease = _lease(f"job{step % 100}", step % 100 + 1, 10.0)
        assert deadlines.renew_locally(lease, now)
        assert deadlines.due(now) == []
    assert deadlines.scans == scans  # ~10 s of ticks, and no lease came near its deadline

    # A grant with a shorter TTL lowers the bound: it expires on time.
    short = _lease("short", 500, 0.5)
    deadlines.on_event(LeaseEvent(500, EventKind.ACQUIRED, short), now=110.0)
    assert deadlines.due(110.4) == []
    assert deadlines.due(110.5) == [Due("short", 1, 500)]


def test_a_resolved_expiry_is_proposed_again_if_still_due() -> None:
    deadlines = Deadlines()
    lease = _lease("job", 1, 1.0)
    deadlines.on_event(LeaseEvent(1, EventKind.ACQUIRED, lease), now=0.0)
    due = Due("job", 1, 1)
    assert deadlines.due(1.0) == [due]
    assert deadlines.due(5.0) == []  # in flight
    deadlines.resolved(due)  # e.g. lost with a leader change
    assert deadlines.due(5.0) == [due]


names = st.sampled_from(["a", "b", "c", "d"])
ttls = st.sampled_from([0.3, 1.0, 2.5])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), names, ttls),
        st.tuples(st.just("renew_log"), names, ttls),
        st.tuples(st.just("renew_locally"), names, ttls),
        st.tuples(st.just("release"), names, ttls),
        st.tuples(st.just("resolve"), names, ttls),
        st.tuples(st.just("restart"), names, ttls),
        st.tuples(st.just("wait"), names, ttls),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_due_matches_a_full_scan_every_time(ops: list[tuple[str, str, float]]) -> None:
    deadlines, reference = Deadlines(), Reference()
    now, revision = 0.0, 0
    for op, name, ttl in ops:
        now += 0.05  # a tick
        current = reference.at.get(name)
        if op in ("grant", "renew_log"):
            revision += 1
            lease = _lease(name, revision, ttl)
            kind = EventKind.ACQUIRED if op == "grant" else EventKind.RENEWED
            deadlines.on_event(LeaseEvent(revision, kind, lease), now)
            reference.at[name] = (lease, now + ttl)
        elif op == "renew_locally" and current is not None:
            lease = current[0]
            assert deadlines.renew_locally(lease, now) == reference.renew_locally(lease, now)
        elif op == "release" and current is not None:
            revision += 1
            deadlines.on_event(LeaseEvent(revision, EventKind.RELEASED, current[0]), now)
            del reference.at[name]
        elif op == "resolve":
            for due in [d for d in reference.proposed if d.name == name]:
                deadlines.resolved(due)
                reference.proposed.discard(due)
        elif op == "restart":
            leases = [lease for lease, _ in reference.at.values()]
            deadlines.restart_all(leases, now)
            reference.at = {lease.name: (lease, now + lease.ttl) for lease in leases}
            reference.proposed.clear()
        elif op == "wait":
            now += ttl
        assert sorted(deadlines.due(now), key=repr) == sorted(reference.due(now), key=repr)
