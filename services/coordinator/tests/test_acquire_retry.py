"""A retried Acquire must not hand back a grant that has ended (K-2).

The client library retries an Acquire with the same request id when an answer
is lost (leader killed or stopped after the commit). If the retry lands after
that grant was released or expired and the name went to someone else, answering
"acquired" with the old token would make two holders believe they hold the name
at once: the old one's writes are then only stopped if the new one wrote first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from coordinator_cluster import free_port
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from marquee.coordinator.v1 import election_pb2, election_pb2_grpc, lease_pb2, lease_pb2_grpc
from marquee_coordinator.app import register
from marquee_coordinator.settings import CoordinatorSettings
from marquee_testing.inprocess import RunningService, serving

TTL = 1.2  # the shortest the fast timing allows: expiry comes quickly


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningService]:
    settings = CoordinatorSettings(
        grpc_port=free_port(),
        metrics_port=-1,
        node_id=1,
        raft_address=f"127.0.0.1:{free_port()}",
        data_dir=tmp_path,
        cluster_secret=SecretStr("s3cret"),
        raft_timing="fast",
        shutdown_grace_seconds=2,
    )
    async with serving("coordinator", settings, register) as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        request = health_pb2.HealthCheckRequest(service="marquee.coordinator.v1.LeaseService")
        async with asyncio.timeout(10):
            while (await health.Check(request)).status != health_pb2.HealthCheckResponse.SERVING:
                await asyncio.sleep(0.02)
        yield running


def acquire(holder: str, request_id: str = "") -> lease_pb2.AcquireRequest:
    return lease_pb2.AcquireRequest(
        name="job", holder_id=holder, ttl=seconds(TTL), request_id=request_id
    )


async def until_free(leases: lease_pb2_grpc.LeaseServiceAsyncStub) -> None:
    async with asyncio.timeout(10):
        while (await leases.Get(lease_pb2.GetRequest(name="job"))).found:
            await asyncio.sleep(0.05)


async def test_a_retry_after_the_grant_expired_and_moved_on_is_not_acquired(
    node: RunningService,
) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(node.channel)
    first = await leases.Acquire(acquire("a", "req-a"))
    assert (first.acquired, first.lease.token) == (True, 1)
    # While the grant stands, the retry is answered with it (the lost-answer case).
    again = await leases.Acquire(acquire("a", "req-a"))
    assert (again.acquired, again.lease.token) == (True, 1)

    await until_free(leases)  # "a" never renews: it expires
    taken = await leases.Acquire(acquire("b"))
    assert (taken.acquired, taken.lease.token) == (True, 2)

    late = await leases.Acquire(acquire("a", "req-a"))
    assert not late.acquired, "a grant that ended was handed back as held"
    assert (late.lease.holder_id, late.lease.token) == ("b", 2)

    # Released and free: still not granted again under the old request id.
    released = await leases.Release(lease_pb2.ReleaseRequest(name="job", holder_id="b", token=2))
    assert released.released
    free = await leases.Acquire(acquire("a", "req-a"))
    assert not free.acquired
    assert not free.HasField("lease")
    assert (await leases.Acquire(acquire("a", "req-a2"))).lease.token == 3


async def test_a_campaign_retry_after_its_term_ended_is_refused(node: RunningService) -> None:
    elections = election_pb2_grpc.ElectionServiceStub(node.channel)
    request = election_pb2.CampaignRequest(
        election="e", candidate_id="c1", ttl=seconds(TTL), request_id="camp-1"
    )
    elected = await elections.Campaign(request)
    await until_no_leader(elections, elected.leader.election)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await elections.Campaign(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def until_no_leader(
    elections: election_pb2_grpc.ElectionServiceAsyncStub, election: str
) -> None:
    # Through the ElectionService: the lease API may not name "_election/" leases.
    async with asyncio.timeout(10):
        while (await elections.Leader(election_pb2.LeaderRequest(election=election))).found:
            await asyncio.sleep(0.05)
