"""The three coordinator services over gRPC on one in-process node with real Raft."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest
from coordinator_cluster import free_port
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY
from pydantic import SecretStr

from marquee.coordinator.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    election_pb2,
    election_pb2_grpc,
    lease_pb2,
    lease_pb2_grpc,
)
from marquee_coordinator.app import register
from marquee_coordinator.settings import CoordinatorSettings
from marquee_testing.inprocess import RunningService, serving

TTL = 3.0


R = TypeVar("R")


async def read(call: grpc.aio.UnaryStreamCall[Any, R] | grpc.aio.StreamStreamCall[Any, R]) -> R:
    """The next message of a server stream, within 5 s."""
    message = await asyncio.wait_for(call.read(), 5)
    assert message is not grpc.aio.EOF
    return cast(R, message)


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


@contextlib.asynccontextmanager
async def one_node(tmp_path: Path) -> AsyncIterator[RunningService]:
    """A single-node cluster (fast timing), serving; drained as on SIGTERM on exit."""
    port = free_port()
    settings = CoordinatorSettings(
        grpc_port=port,
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
        async with asyncio.timeout(10):
            while True:
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service="marquee.coordinator.v1.LeaseService")
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.02)
        yield running


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with one_node(tmp_path) as running:
        yield running


async def test_leases_through_grpc(node: RunningService) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(node.channel)
    got = await leases.Acquire(
        lease_pb2.AcquireRequest(name="job", holder_id="a", ttl=seconds(TTL), request_id="r1")
    )
    assert got.acquired
    assert got.lease.token == 1
    assert got.header.member_id == "1"
    assert got.header.leader_id == "1"
    assert got.header.leader_address == node.address
    assert got.header.cluster_id
    assert got.header.raft_term >= 1
    assert got.header.revision == got.lease.modified_revision
    assert 0 < got.lease.remaining.ToNanoseconds() <= TTL * 1e9

    # The same request id is the same grant; another holder gets an answer, not an error.
    again = await leases.Acquire(
        lease_pb2.AcquireRequest(name="job", holder_id="a", ttl=seconds(TTL), request_id="r1")
    )
    assert (again.acquired, again.lease.token) == (True, 1)
    other = await leases.Acquire(
        lease_pb2.AcquireRequest(name="job", holder_id="b", ttl=seconds(TTL))
    )
    assert not other.acquired
    assert other.lease.holder_id == "a"

    renewed = await leases.Renew(
        lease_pb2.RenewRequest(name="job", holder_id="a", token=1, ttl=seconds(2 * TTL))
    )
    assert renewed.renewed
    assert renewed.lease.token == 1
    assert renewed.lease.ttl.ToSeconds() == 2 * TTL
    lost = await leases.Renew(lease_pb2.RenewRequest(name="job", holder_id="a", token=9))
    assert not lost.renewed

    async def requests() -> AsyncIterator[lease_pb2.KeepAliveRequest]:
        yield lease_pb2.KeepAliveRequest(name="job", holder_id="a", token=1)
        yield lease_pb2.KeepAliveRequest(name="job", holder_id="a", token=2)

    answers = [a async for a in leases.KeepAlive(requests())]
    assert [(a.alive, a.token) for a in answers] == [(True, 1), (False, 2)]
    assert 0 < answers[0].remaining.ToNanoseconds() <= 2 * TTL * 1e9
    assert answers[0].ttl.ToNanoseconds() == 2 * TTL * 1e9
    assert not answers[1].HasField("remaining")
    assert not answers[1].HasField("ttl")
    assert all(a.header.raft_term >= 1 and a.header.member_id for a in answers)
    assert answers[0].header.revision == renewed.header.revision  # renewals write nothing

    listed = await leases.List(lease_pb2.ListRequest(prefix="jo"))
    assert [lease.name for lease in listed.leases] == ["job"]
    found = await leases.Get(lease_pb2.GetRequest(name="job"))
    assert found.found
    assert not (await leases.Get(lease_pb2.GetRequest(name="nope"))).found

    released = await leases.Release(lease_pb2.ReleaseRequest(name="job", holder_id="a", token=1))
    assert released.released
    assert not (
        await leases.Release(lease_pb2.ReleaseRequest(name="job", holder_id="a", token=1))
    ).released
    regranted = await leases.Acquire(
        lease_pb2.AcquireRequest(name="job", holder_id="b", ttl=seconds(TTL))
    )
    assert regranted.lease.token == 2


async def test_an_open_keepalive_stream_ends_unavailable_as_soon_as_the_node_stops(
    tmp_path: Path,
) -> None:
    """A stream waiting for its next renewal does not hold the drain for its grace period."""
    client_done = asyncio.Event()

    async def requests() -> AsyncIterator[lease_pb2.KeepAliveRequest]:
        yield lease_pb2.KeepAliveRequest(name="job", holder_id="a", token=1)
        await client_done.wait()  # a holder between two renewals

    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as clients:
        async with one_node(tmp_path) as running:
            await lease_pb2_grpc.LeaseServiceStub(running.channel).Acquire(
                lease_pb2.AcquireRequest(name="job", holder_id="a", ttl=seconds(TTL))
            )
            channel = await clients.enter_async_context(grpc.aio.insecure_channel(running.address))
            stream = lease_pb2_grpc.LeaseServiceStub(channel).KeepAlive(requests())
            clients.callback(client_done.set)
            assert (await read(stream)).alive
            began = loop.time()
        drained = loop.time() - began  # the grace period is 2 s
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(stream.read(), 5)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (ended.value.details() or "")
    assert drained < 1.5


async def test_a_renewal_the_leader_answers_alone_reads_like_one_through_the_log(
    node: RunningService,
) -> None:
    """Renew without a ttl and KeepAlive items take the leader's synchronous path."""
    leases = lease_pb2_grpc.LeaseServiceStub(node.channel)
    got = await leases.Acquire(
        lease_pb2.AcquireRequest(name="job", holder_id="a", ttl=seconds(TTL))
    )
    before = REGISTRY.get_sample_value("marquee_coordinator_local_renewals_total") or 0.0
    started = time.time()
    local = await leases.Renew(lease_pb2.RenewRequest(name="job", holder_id="a", token=1))
    # A new ttl is a log entry: the same lease through the other path.
    logged = await leases.Renew(
        lease_pb2.RenewRequest(name="job", holder_id="a", token=1, ttl=seconds(TTL))
    )
    after = REGISTRY.get_sample_value("marquee_coordinator_local_renewals_total")
    assert after == before + 1

    assert local.renewed
    assert logged.renewed
    assert local.header.revision == got.header.revision  # nothing written
    assert logged.header.revision > got.header.revision
    for field in ("name", "holder_id", "token", "ttl", "acquired_at", "acquired_revision"):
        assert getattr(local.lease, field) == getattr(logged.lease, field), field
    assert local.lease.modified_revision == got.lease.modified_revision
    assert local.lease.remaining.ToNanoseconds() == TTL * 1e9  # restarted in full
    expires = local.lease.expires_at.ToNanoseconds() / 1e9
    assert started + TTL <= expires <= time.time() + TTL

    async def requests() -> AsyncIterator[lease_pb2.KeepAliveRequest]:
        yield lease_pb2.KeepAliveRequest(name="job", holder_id="a", token=1)
        yield lease_pb2.KeepAliveRequest(name="job", holder_id="b", token=1)
        yield lease_pb2.KeepAliveRequest(name="nope", holder_id="a", token=1)
        yield lease_pb2.KeepAliveRequest(name="job", holder_id="a", token=1)

    answers = [a async for a in leases.KeepAlive(requests())]
    assert [(a.name, a.alive) for a in answers] == [
        ("job", True),
        ("job", False),
        ("nope", False),
        ("job", True),
    ]
    assert answers[0] == answers[3]  # the same answer while nothing is written
    assert answers[0].remaining == answers[0].ttl == seconds(TTL)
    assert answers[0].header == logged.header

    # Another lease's write moves the revision: the kept header of local answers follows.
    other = await leases.Acquire(
        lease_pb2.AcquireRequest(name="other", holder_id="x", ttl=seconds(TTL))
    )
    again = await leases.Renew(lease_pb2.RenewRequest(name="job", holder_id="a", token=1))
    assert other.header.revision > logged.header.revision
    assert again.header == other.header

    # Bad input past the synchronous path is still refused field by field.
    async def bad() -> AsyncIterator[lease_pb2.KeepAliveRequest]:
        yield lease_pb2.KeepAliveRequest(name="", holder_id="a", token=1)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in leases.KeepAlive(bad()):
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name must not be empty" in (refused.value.details() or "")


async def test_acquire_waits_for_a_release(node: RunningService) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(node.channel)
    first = await leases.Acquire(
        lease_pb2.AcquireRequest(name="w", holder_id="a", ttl=seconds(TTL))
    )
    waiting = asyncio.ensure_future(
        leases.Acquire(
            lease_pb2.AcquireRequest(
                name="w", holder_id="b", ttl=seconds(TTL), wait_timeout=seconds(5)
            )
        )
    )
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await leases.Release(lease_pb2.ReleaseRequest(name="w", holder_id="a", token=first.lease.token))
    got = await asyncio.wait_for(waiting, 5)
    assert got.acquired
    assert got.lease.holder_id == "b"
    # A wait that runs out answers acquired=false with the holder.
    timed_out = await leases.Acquire(
        lease_pb2.AcquireRequest(
            name="w", holder_id="c", ttl=seconds(TTL), wait_timeout=seconds(0.2)
        )
    )
    assert not timed_out.acquired
    assert timed_out.lease.holder_id == "b"


async def test_watch_sends_existing_leases_then_changes(node: RunningService) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(node.channel)
    held = await leases.Acquire(
        lease_pb2.AcquireRequest(name="w/1", holder_id="a", ttl=seconds(TTL))
    )
    await leases.Acquire(lease_pb2.AcquireRequest(name="x", holder_id="a", ttl=seconds(TTL)))
    stream = leases.Watch(lease_pb2.WatchRequest(prefix="w/", include_existing=True))
    first = await read(stream)
    assert [(e.type, e.lease.name) for e in first.events] == [
        (lease_pb2.LEASE_EVENT_TYPE_EXISTING, "w/1")
    ]
    await leases.Release(
        lease_pb2.ReleaseRequest(name="w/1", holder_id="a", token=held.lease.token)
    )
    await leases.Acquire(lease_pb2.AcquireRequest(name="x/2", holder_id="a", ttl=seconds(TTL)))
    await leases.Acquire(lease_pb2.AcquireRequest(name="w/2", holder_id="a", ttl=seconds(TTL)))
    seen = []
    for _ in range(2):
        response = await read(stream)
        seen += [(e.type, e.lease.name) for e in response.events]
    assert seen == [
        (lease_pb2.LEASE_EVENT_TYPE_RELEASED, "w/1"),
        (lease_pb2.LEASE_EVENT_TYPE_ACQUIRED, "w/2"),
    ]
    stream.cancel()


async def test_bad_input_names_the_fields(node: RunningService) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(node.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await leases.Acquire(lease_pb2.AcquireRequest(name="", holder_id="", ttl=seconds(0.1)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raised.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["name", "holder_id", "ttl"]


async def test_campaign_observe_proclaim_resign(node: RunningService) -> None:
    elections = election_pb2_grpc.ElectionServiceStub(node.channel)
    observed = elections.Observe(election_pb2.ObserveRequest(election="e"))
    assert not (await read(observed)).found

    first = await elections.Campaign(
        election_pb2.CampaignRequest(
            election="e", candidate_id="c1", value=b"one", ttl=seconds(TTL)
        )
    )
    assert first.leader.lease_name == "_election/e"
    news = await read(observed)
    assert (news.found, news.leader.key.candidate_id, news.leader.value) == (True, "c1", b"one")

    second = asyncio.ensure_future(
        elections.Campaign(
            election_pb2.CampaignRequest(
                election="e", candidate_id="c2", value=b"two", ttl=seconds(TTL)
            )
        )
    )
    proclaimed = await elections.Proclaim(
        election_pb2.ProclaimRequest(leader=first.leader, value=b"uno")
    )
    assert proclaimed.proclaimed
    assert (await read(observed)).leader.value == b"uno"
    leader = await elections.Leader(election_pb2.LeaderRequest(election="e"))
    assert leader.leader.key.candidate_id == "c1"
    assert not second.done()

    assert (await elections.Resign(election_pb2.ResignRequest(leader=first.leader))).resigned
    elected = await asyncio.wait_for(second, 5)
    assert elected.leader.candidate_id == "c2"
    assert elected.leader.token > first.leader.token
    changes = [await read(observed) for _ in range(2)]
    assert [(c.found, c.leader.key.candidate_id) for c in changes] == [(False, ""), (True, "c2")]
    # A stale key changes nothing.
    assert not (await elections.Resign(election_pb2.ResignRequest(leader=first.leader))).resigned
    assert not (
        await elections.Proclaim(election_pb2.ProclaimRequest(leader=first.leader, value=b"x"))
    ).proclaimed
    observed.cancel()


async def test_cluster_status_of_a_single_node(node: RunningService) -> None:
    cluster = cluster_pb2_grpc.ClusterServiceStub(node.channel)
    status = await cluster.Status(cluster_pb2.StatusRequest())
    assert status.has_quorum
    assert status.member.role == cluster_pb2.MEMBER_ROLE_LEADER
    assert [(m.id, m.grpc_address) for m in status.members] == [("1", node.address)]
    assert status.storage_size_bytes > 0
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cluster.MemberRemove(cluster_pb2.MemberRemoveRequest(id="1"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cluster.MemberRemove(cluster_pb2.MemberRemoveRequest(id="7"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
