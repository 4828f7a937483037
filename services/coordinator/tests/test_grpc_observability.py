"""A real node's /metrics (issue 9 item 9): term, leader changes, commit and apply index,
apply latency, leases held, grants, expiries and elections by outcome; and the warning
when elections come faster than one per election timeout."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from coordinator_cluster import free_port
from google.protobuf.duration_pb2 import Duration
from grpc_cluster import ADMIN, GrpcNode, wait_for_leader, wait_until_serving
from prometheus_client.parser import text_string_to_metric_families

from marquee.coordinator.v1 import cluster_pb2, lease_pb2
from marquee_coordinator.raft_config import FAST_TIMING

pytestmark = pytest.mark.timeout(150)

PACE_WARNING = "elections come faster than one per election timeout"
RETRY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)


def ttl(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def scrape(node: GrpcNode) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    url = f"http://127.0.0.1:{node.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


@pytest.fixture(params=["fast"])
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[GrpcNode]]:
    """Three nodes serving /metrics, with the Raft timing the parameter names."""
    started = [
        GrpcNode(i, tmp_path / f"n{i}", metrics_port=free_port(), timing=request.param)
        for i in (1, 2, 3)
    ]
    try:
        for node in started:
            node.peers = [n.raft_address for n in started if n is not node]
            node.start()
        wait_until_serving(started)
        yield started
    finally:
        for node in started:
            node.kill()


def test_a_node_exports_its_raft_and_lease_metrics(nodes: list[GrpcNode]) -> None:
    leader = wait_for_leader(nodes)
    follower = next(n for n in nodes if n is not leader)
    held = leader.leases.Acquire(
        lease_pb2.AcquireRequest(name="m/held", holder_id="h", ttl=ttl(600)), timeout=5
    )
    assert held.acquired
    short = FAST_TIMING.min_lease_ttl
    leader.leases.Acquire(
        lease_pb2.AcquireRequest(name="m/short", holder_id="h", ttl=ttl(short)), timeout=5
    )
    wait_until(
        lambda: not leader.leases.Get(lease_pb2.GetRequest(name="m/short"), timeout=5).found,
        "m/short expired",
    )
    # The expiry is applied on the follower too; its counters then show it.
    wait_until(
        lambda: (
            value(scrape(follower), "marquee_coordinator_lease_events_total", event="expired") >= 1
        ),
        "the follower applied the expiry",
    )

    status = leader.status()
    metrics = scrape(leader)
    assert value(metrics, "marquee_coordinator_raft_term") == status.header.raft_term >= 1
    assert value(metrics, "marquee_coordinator_raft_commit_index") >= status.raft_commit_index > 0
    assert value(metrics, "marquee_coordinator_raft_applied_index") >= status.raft_applied_index
    assert value(metrics, "marquee_coordinator_leases_held") == 1
    assert value(metrics, "marquee_coordinator_serving_leader") == 1
    assert value(metrics, "marquee_coordinator_lease_events_total", event="acquired") == 2
    assert value(metrics, "marquee_coordinator_lease_events_total", event="expired") == 1
    assert value(metrics, "marquee_coordinator_apply_latency_seconds_count") >= 2
    assert value(metrics, "marquee_coordinator_elections_total", outcome="won") >= 1
    assert value(metrics, "marquee_coordinator_leader_changes_total") >= 1
    assert not [name for name, _ in metrics if name.endswith("_created")]  # P-2

    on_follower = scrape(follower)
    assert value(on_follower, "marquee_coordinator_serving_leader") == 0
    assert value(on_follower, "marquee_coordinator_leases_held") == 1
    assert value(on_follower, "marquee_coordinator_leader_changes_total") >= 1
    assert value(on_follower, "marquee_coordinator_lease_events_total", event="acquired") == 2

    # A handover is an election the target wins and a leader change everyone sees.
    changes_before = value(on_follower, "marquee_coordinator_leader_changes_total")
    won_before = value(on_follower, "marquee_coordinator_elections_total", outcome="won")
    leader.cluster.TransferLeadership(
        cluster_pb2.TransferLeadershipRequest(target_id=follower.id), timeout=5, metadata=ADMIN
    )
    wait_until(
        lambda: value(scrape(follower), "marquee_coordinator_serving_leader") == 1,
        "the target serves",
    )
    after = scrape(follower)
    assert value(after, "marquee_coordinator_elections_total", outcome="won") == won_before + 1
    assert value(after, "marquee_coordinator_leader_changes_total") > changes_before
    assert value(after, "marquee_coordinator_raft_term") > status.header.raft_term


# The default timing's 1.0 s election timeout leaves handovers the widest margin.
@pytest.mark.parametrize("nodes", ["default"], indirect=True)
def test_elections_faster_than_one_per_election_timeout_are_logged(
    nodes: list[GrpcNode],
) -> None:
    """Handovers back to back start new terms far faster than elections should come."""

    # Only what the nodes log from now on (their first election is over).
    offsets = {node.id: node.log_path.stat().st_size for node in nodes}

    def warned() -> bool:
        def since(node: GrpcNode) -> str:
            with node.log_path.open("rb") as log:
                log.seek(offsets[node.id])
                return log.read().decode(errors="replace")

        return any(PACE_WARNING in since(node) for node in nodes)

    by_id = {node.id: node for node in nodes}
    leader = wait_for_leader(nodes)
    deadline = time.monotonic() + 60
    while not warned():
        assert time.monotonic() < deadline, "no warning after a minute of handovers"
        try:
            moved = leader.cluster.TransferLeadership(
                cluster_pb2.TransferLeadershipRequest(), timeout=5, metadata=ADMIN
            )
        except grpc.RpcError as error:
            # Not serving yet (its epoch is not committed), or no longer leading: again.
            if error.code() not in RETRY:
                raise
            leader = wait_for_leader(nodes)
            continue
        # The answer names the new leader: hand over again at once, without polling.
        leader = by_id.get(moved.header.leader_id) or wait_for_leader(nodes)
