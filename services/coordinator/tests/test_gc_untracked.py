"""Per-lease bookkeeping of the leader adds no object the garbage collector tracks.

A full collection walks every tracked object with the GIL held. Deadlines and
encoded answers kept as tuples holding a Lease came to two tracked objects per
lease, and a local renewal made a new one, so full collections came every ~5
s: ~26 ms each at 20,000 leases (docs/coordinator-timing.md, "Garbage
collection"). Plain tuples of numbers and bytes are dropped from the
collector's lists, so only the Lease objects of the state remain.
"""

from __future__ import annotations

import gc
from typing import cast

from marquee_coordinator.encoded_renewals import RenewalAnswers
from marquee_coordinator.expiry import Deadlines
from marquee_coordinator.raft_node import LeaseNode, View
from marquee_coordinator.state import EventKind, Lease, LeaseEvent

LEASES = 1000
# Slack for the containers themselves (a dict, a set, the header's view).
SLACK = 20


class FakeNode:
    def view(self) -> View:
        return View("cluster-1", "m1", 3, 41, "m1", "127.0.0.1:7001")

    def view_token(self) -> tuple[object, ...]:
        return tuple(self.view())


def tracked_now() -> int:
    gc.collect()
    return len(gc.get_objects())


def table() -> list[Lease]:
    return [Lease(f"job-{n}", f"holder-{n}", n + 1, 9.0, n + 10) for n in range(LEASES)]


def test_deadlines_of_many_leases_add_no_tracked_objects() -> None:
    leases = table()
    deadlines = Deadlines()
    before = tracked_now()
    for lease in leases:
        deadlines.on_event(LeaseEvent(lease.revision, EventKind.ACQUIRED, lease), now=0.0)
    for now in (1.0, 2.0, 3.0):
        assert all(deadlines.renew_locally(lease, now) for lease in leases)
    assert tracked_now() - before < SLACK
    deadlines.restart_all(leases, now=4.0)
    assert not deadlines.due(now=5.0)
    assert tracked_now() - before < SLACK
    assert len(deadlines) == LEASES
    assert deadlines.due(now=13.5)  # still a deadline per lease, at full TTL


def test_encoded_answers_of_many_leases_add_no_tracked_objects() -> None:
    leases = table()
    answers = RenewalAnswers(cast(LeaseNode, FakeNode()))
    answers.keepalive(leases[0])  # the header's view and encoding, kept once
    before = tracked_now()
    for lease in leases:
        answers.keepalive(lease)
        answers.renew(lease, wall_now=1_796_454_013.0)
    assert tracked_now() - before < SLACK


def test_a_new_revision_of_a_lease_gets_new_parts() -> None:
    answers = RenewalAnswers(cast(LeaseNode, FakeNode()))
    lease = Lease("job", "a", 1, 10.0, 5)
    first = answers.keepalive(lease)
    assert answers.keepalive(Lease("job", "a", 1, 10.0, 5)) == first
    assert answers.keepalive(Lease("job", "a", 1, 20.0, 6)) != first  # renewed with a new TTL
    assert answers.keepalive(Lease("job", "b", 2, 20.0, 7)) != first  # granted anew
