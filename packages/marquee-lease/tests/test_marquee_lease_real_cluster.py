"""The client against a real 3-node coordinator: leader following, renewal across a kill -9."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest

from marquee_lease import Backoff, ClusterStatus, CoordinatorClient, CoordinatorError
from marquee_testing.coordinator import CoordinatorCluster

TTL = 3.0


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
    async with client.lease("real/failover", TTL) as held:
        token = held.token
        old_leader = (await client.cluster_status()).header.leader_address
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
    cluster.node(old_leader).start()


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
