"""Prometheus metrics of a coordinator node, on the default registry the platform serves.

Everything that only grows is a Counter (P-2). Levels (term, commit and apply
index, leases held, leadership) are read from the node when /metrics is
scraped, by one collector registered at import: the HTTP thread reads them
under the same locks as any other reader, and nothing is updated per call.
Counters count what *this member* saw or applied: every replica applies every
lease event, so a cluster's grants are any one member's, not the sum.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from marquee_coordinator.state import EventKind

if TYPE_CHECKING:
    from marquee_coordinator.raft_node import LeaseNode

LEADER_CHANGES = Counter(
    "marquee_coordinator_leader_changes",
    "Leaderships this member learned of: a leader known at a new term (the first one "
    "after start included).",
)
ELECTIONS = Counter(
    "marquee_coordinator_elections",
    "Elections this member campaigned in, by outcome: won; lost (another member won, or "
    "a higher term came first); timed_out (no winner within its election timeout, e.g. "
    "a split vote or no quorum: it campaigned again).",
    ["outcome"],
)
LEASE_EVENTS = Counter(
    "marquee_coordinator_lease_events",
    "Lease changes applied by this member's state machine, by event: acquired (a grant, "
    "with a new fencing token), renewed, released, expired.",
    ["event"],
)
APPLY_SECONDS = Histogram(
    "marquee_coordinator_apply_latency_seconds",
    "On the leader, from proposing a batch of calls' commands to applying it: what a "
    "call waits for Raft (replication to a quorum, commit, apply).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)

# Pre-bound children: labels() costs a lock and a lookup, and apply runs on the tick thread.
WON = ELECTIONS.labels("won")
LOST = ELECTIONS.labels("lost")
TIMED_OUT = ELECTIONS.labels("timed_out")
EVENTS = {kind: LEASE_EVENTS.labels(kind.value) for kind in EventKind}


class NodeCollector(Collector):
    """Gauges read from the node serving in this process when /metrics is scraped.

    A process runs one node; tests may run several one after another, so the
    latest attached node is the one reported.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._node: LeaseNode | None = None

    def attach(self, node: LeaseNode) -> None:
        with self._lock:
            self._node = node

    def detach(self, node: LeaseNode) -> None:
        with self._lock:
            if self._node is node:
                self._node = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            node = self._node
        if node is None or not node.is_open():
            return
        try:
            status = node.status()
            held = len(node.local_leases())
        except Exception:  # closed meanwhile: this scrape goes without the node's gauges
            return
        gauges = (
            ("marquee_coordinator_raft_term", "The Raft term this member is in.", status.term),
            (
                "marquee_coordinator_raft_commit_index",
                "Highest Raft log index this member knows to be committed.",
                status.commit_index,
            ),
            (
                "marquee_coordinator_raft_applied_index",
                "Highest Raft log index applied to this member's state machine.",
                status.last_applied,
            ),
            (
                "marquee_coordinator_leases_held",
                "Leases held in this member's replica of the state (elections included).",
                held,
            ),
            (
                "marquee_coordinator_serving_leader",
                "1 while this member is the leader and serves (its epoch is committed).",
                int(status.serving),
            ),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)


NODE = NodeCollector()
REGISTRY.register(NODE)


class LocalRenewals(Collector):
    """marquee_coordinator_local_renewals_total, without prometheus_client's Counter.

    Counter.inc takes a mutex and checks its labels on every call: ~7% of a
    leader's renewal handler at 4,000 renewals/s. Here a renewal costs one
    next() on an itertools.count (a C call, atomic under the GIL, from any
    thread); a scrape takes a number too, so it reports what it drew less
    the numbers scrapes drew.
    """

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._scrapes = 0

    def inc(self) -> None:
        next(self._numbers)

    def value(self) -> int:
        with self._lock:
            drawn = next(self._numbers)  # the count of every earlier draw
            scrapes, self._scrapes = self._scrapes, self._scrapes + 1
        return drawn - scrapes

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "marquee_coordinator_local_renewals",
            "Renewals this member answered as serving leader without a log entry, under "
            "its leader lease (LOCAL_RENEWAL, on by default); they make no `renewed` event.",
            value=self.value(),
        )


LOCAL_RENEWALS = LocalRenewals()
REGISTRY.register(LOCAL_RENEWALS)
