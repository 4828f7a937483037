"""The client against a real 3-node coordinator: leader following, renewal across a kill -9
and a SIGSTOP of the leader, and a watcher that leaves a paused leader."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager

import pytest

from marquee_lease import (
    Backoff,
    ClusterStatus,
    CoordinatorClient,
    CoordinatorError,
    ElectionLeader,
)
from marquee_testing.coordinator import CoordinatorCluster, CoordinatorNode

TTL = 3.0
# A leader pause longer than the TTL (issue 9.11 saw a 3 s lease lost in a 4 s one).
PAUSE = 4.0
# The default profile's longest election timeout (this cluster runs the faster
# "fast" one): a watcher must report the new leader within two of them.
ELECTION_TIMEOUT = 1.0
# How long the watcher's stream may stay quiet before it asks another member.
CHECK_EVERY = ELECTION_TIMEOUT / 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorCluster]:
    """This module's own cluster (not the shared coordinator_cluster): its tests kill nodes."""
    with CoordinatorCluster(tmp_path_factory.mktemp("coordinator")) as real:
        yield real


async def wait_for_leader(
    cluster: CoordinatorCluster, client: CoordinatorClient, within: float = 30.0
) -> ClusterStatus:
    async with asyncio.timeout(within):
        while True:
            if not any(n.is_running() for n in cluster.nodes):
                pytest.fail(f"every node exited\n{cluster.logs()}")
            try:
                status = await client.cluster_status(timeout=1.0)
                if status.header.leader_address and status.has_quorum:
                    return status
            except CoordinatorError:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def client(cluster: CoordinatorCluster) -> AsyncIterator[CoordinatorClient]:
    # Every test starts with all three nodes, even if an earlier one could not restart
    # the node it killed: a fault test on two nodes would test something else.
    for node in cluster.nodes:
        if not node.is_running():
            await asyncio.to_thread(node.start)
    async with CoordinatorClient(
        cluster.endpoints, backoff=Backoff(initial=0.05, maximum=0.3)
    ) as coordinator:
        try:
            await wait_for_leader(cluster, coordinator)
        except TimeoutError:
            pytest.fail(f"no leader\n{cluster.logs()}")
        yield coordinator


async def test_status_shows_every_member_and_the_leader(
    cluster: CoordinatorCluster, client: CoordinatorClient
) -> None:
    # Members learn each other's gRPC addresses through the log, shortly after start-up.
    async with asyncio.timeout(10):
        while True:
            status = await client.cluster_status()
            if sorted(m.grpc_address for m in status.members) == sorted(cluster.endpoints):
                break
            await asyncio.sleep(0.1)
    leaders = [m for m in status.members if m.role == "leader"]
    assert [m.grpc_address for m in leaders] == [status.header.leader_address]


async def test_a_client_given_only_a_follower_finds_the_leader(
    cluster: CoordinatorCluster, client: CoordinatorClient
) -> None:
    leader = (await client.cluster_status()).header.leader_address
    follower = next(a for a in cluster.endpoints if a != leader)
    async with CoordinatorClient([follower]) as via_follower:
        result = await via_follower.acquire("real/redirect", "me", TTL)
        assert result.acquired
        assert via_follower.transport.leader == leader
        assert result.lease is not None
        assert await via_follower.release("real/redirect", "me", result.lease.token)


async def test_a_held_lease_survives_a_kill_of_the_leader(
    cluster: CoordinatorCluster, client: CoordinatorClient
) -> None:
    old_leader = (await client.cluster_status()).header.leader_address
    try:
        async with client.lease("real/failover", TTL) as held:
            token = held.token
            cluster.node(old_leader).kill()
            # Two TTLs: renewals must have reached the new leader, or the lease is lost.
            await asyncio.sleep(2 * TTL)
            assert held.valid(), held.lost_reason
            assert held.token == token
            current = await client.get("real/failover")
            assert current is not None
            assert current.token == token
            assert client.transport.leader not in (None, old_leader)
        assert await client.get("real/failover") is None
    finally:
        # Whatever failed, the next test gets all three nodes back.
        await asyncio.to_thread(cluster.node(old_leader).start)


@contextmanager
def paused(node: CoordinatorNode) -> Iterator[None]:
    """SIGSTOP the node for the block: its sockets stay open, it answers nothing."""
    pid = node.pid
    assert pid is not None, f"{node.name} is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.timeout(90)
async def test_a_short_lease_outlives_a_pause_of_the_leader_longer_than_its_ttl(
    cluster: CoordinatorCluster, client: CoordinatorClient
) -> None:
    async with client.lease("real/paused", TTL) as held:
        token = held.token
        old_leader = client.transport.leader
        assert old_leader is not None
        with paused(cluster.node(old_leader)):
            # Its first renewal has TTL - TTL/3 - margin = 1.7 s, less than one 2 s
            # attempt: it must still reach the new leader. The pause is the fault
            # under test (longer than the TTL), not a wait for something.
            await asyncio.sleep(PAUSE)
            assert not held.lost.is_set(), held.lost_reason
            assert held.valid()
        assert held.renewals >= 2
        current = await client.get("real/paused")
        assert current is not None
        assert (current.holder_id, current.token) == (held.holder_id, token)
    assert await client.get("real/paused") is None


@pytest.mark.timeout(90)
async def test_observe_reports_a_leader_elected_while_the_coordinator_leader_is_paused(
    cluster: CoordinatorCluster, client: CoordinatorClient
) -> None:
    election = "real/observe-paused"
    reports: list[tuple[float, ElectionLeader | None]] = []
    reported = asyncio.Condition()

    async def watch() -> None:
        async with aclosing(client.observe(election, check_every=CHECK_EVERY)) as changes:
            async for change in changes:
                async with reported:
                    reports.append((time.monotonic(), change))
                    reported.notify_all()

    def elected() -> bool:
        return any(c is not None and c.key.candidate_id == "b" for _, c in reports)

    watcher = asyncio.create_task(watch())
    try:
        async with reported, asyncio.timeout(10):
            await reported.wait_for(lambda: bool(reports))
        assert reports[0][1] is None
        streaming = client.transport.leader
        assert streaming is not None
        majority = [address for address in cluster.endpoints if address != streaming]
        with paused(cluster.node(streaming)):
            async with (
                CoordinatorClient(majority, backoff=Backoff(0.05, 0.3)) as other,
                other.campaign(election, "b", b"value-b", ttl=TTL, timeout=30),
            ):
                elected_at = time.monotonic()
                async with reported, asyncio.timeout(2 * ELECTION_TIMEOUT):
                    await reported.wait_for(elected)
                reported_at, change = next((t, c) for t, c in reports if c is not None)
                assert change is not None
                assert change.value == b"value-b"
                assert reported_at - elected_at <= 2 * ELECTION_TIMEOUT
    finally:
        watcher.cancel()
        await asyncio.wait([watcher])


async def test_campaign_and_observe(client: CoordinatorClient) -> None:
    async with client.campaign("real/election", "a", b"value-a", ttl=TTL) as leadership:
        leader = await client.leader("real/election")
        assert leader is not None
        assert (leader.key.candidate_id, leader.key.token) == ("a", leadership.token)
        assert leader.value == b"value-a"
        async with aclosing(client.observe("real/election")) as changes:
            first = await asyncio.wait_for(anext(changes), 5.0)
            assert first is not None
            assert first.key.candidate_id == "a"
            await leadership.proclaim(b"value-a2")
            second = await asyncio.wait_for(anext(changes), 5.0)
            assert second is not None
            assert second.value == b"value-a2"
    assert await client.leader("real/election") is None
