"""Safety at the edges of the coordinator's API (issue 9 item 6), on one in-process node:
request ids scoped as lease.proto says, the election namespace closed to the lease API,
and cluster changes guarded by the admin credential outside the dev profile."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from coordinator_inprocess import SECRET, seconds, serving_node

from marquee.coordinator.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    election_pb2,
    election_pb2_grpc,
    lease_pb2,
    lease_pb2_grpc,
)
from marquee_testing.inprocess import RunningService

TTL = 3.0
ADMIN_TOKEN = "admin-t0ken"


@pytest.fixture
async def dev_node(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with serving_node(tmp_path) as running:
        yield running


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_request_ids_are_scoped_to_name_and_holder(dev_node: RunningService) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(dev_node.channel)

    def acquire(name: str, holder: str) -> Any:
        return leases.Acquire(
            lease_pb2.AcquireRequest(name=name, holder_id=holder, ttl=seconds(TTL), request_id="r")
        )

    first = await acquire("job", "a")
    assert first.acquired
    # The same id under another name or holder is a request of its own, not an error.
    other_name = await acquire("other", "a")
    assert other_name.acquired
    assert other_name.lease.name == "other"
    other_holder = await acquire("job", "b")
    assert not other_holder.acquired
    assert other_holder.lease.holder_id == "a"
    # ... and the original (name, holder, id) is still recognised as a retry.
    retried = await acquire("job", "a")
    assert retried.acquired
    assert retried.lease.token == first.lease.token
    assert retried.lease.modified_revision == first.lease.modified_revision


async def test_the_lease_api_cannot_touch_an_election(dev_node: RunningService) -> None:
    leases = lease_pb2_grpc.LeaseServiceStub(dev_node.channel)
    elections = election_pb2_grpc.ElectionServiceStub(dev_node.channel)
    won = await elections.Campaign(
        election_pb2.CampaignRequest(election="e", candidate_id="c1", ttl=seconds(TTL))
    )
    key = won.leader
    name = key.lease_name
    assert name == "_election/e"

    async def keep_alive() -> None:
        async def requests() -> AsyncIterator[lease_pb2.KeepAliveRequest]:
            yield lease_pb2.KeepAliveRequest(name=name, holder_id="c1", token=key.token)

        async for _ in leases.KeepAlive(requests()):
            pass

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "Acquire": lambda: leases.Acquire(
            lease_pb2.AcquireRequest(name="_election/new", holder_id="x", ttl=seconds(TTL))
        ),
        "Release": lambda: leases.Release(
            lease_pb2.ReleaseRequest(name=name, holder_id="c1", token=key.token)
        ),
        "Renew": lambda: leases.Renew(
            lease_pb2.RenewRequest(name=name, holder_id="c1", token=key.token)
        ),
        "KeepAlive": keep_alive,
        "Get": lambda: leases.Get(lease_pb2.GetRequest(name=name)),
    }
    for method, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "reserved for the ElectionService" in (raised.value.details() or ""), method

    leader = await elections.Leader(election_pb2.LeaderRequest(election="e"))
    assert leader.leader.key.candidate_id == "c1"
    assert leader.leader.key.token == key.token
    listed = await leases.List(lease_pb2.ListRequest(prefix="_election/"))
    assert [lease.name for lease in listed.leases] == [name]  # reading the namespace is fine


def admin_calls(
    cluster: cluster_pb2_grpc.ClusterServiceAsyncStub,
) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Each admin RPC, on a single node, with arguments that pass validation."""
    return {
        "MemberAdd": lambda metadata: cluster.MemberAdd(
            cluster_pb2.MemberAddRequest(id="1", raft_address="127.0.0.1:1", grpc_address="x:1"),
            metadata=metadata,
        ),
        "MemberRemove": lambda metadata: cluster.MemberRemove(
            cluster_pb2.MemberRemoveRequest(id="7"), metadata=metadata
        ),
        "TransferLeadership": lambda metadata: cluster.TransferLeadership(
            cluster_pb2.TransferLeadershipRequest(), metadata=metadata
        ),
    }


# What each admin call answers once it is let through, on a lone node.
PAST_THE_GUARD = {
    "MemberAdd": grpc.StatusCode.ALREADY_EXISTS,
    "MemberRemove": grpc.StatusCode.NOT_FOUND,
    "TransferLeadership": grpc.StatusCode.UNAVAILABLE,  # nobody to hand over to
}


@pytest.mark.parametrize(
    ("admin_token", "credential"), [(ADMIN_TOKEN, ADMIN_TOKEN), (None, SECRET)]
)
async def test_cluster_changes_need_the_admin_credential_outside_dev(
    tmp_path: Path, admin_token: str | None, credential: str
) -> None:
    overrides: dict[str, Any] = {"profile": "prod"}
    if admin_token is not None:
        overrides["admin_token"] = admin_token
    async with serving_node(tmp_path, **overrides) as node:
        cluster: cluster_pb2_grpc.ClusterServiceAsyncStub = cluster_pb2_grpc.ClusterServiceStub(
            node.channel
        )
        for method, call in admin_calls(cluster).items():
            assert await code_of(call(())) == grpc.StatusCode.UNAUTHENTICATED, method
            for malformed in ("Basic " + credential, "Bearer ", credential):
                assert await code_of(call((("authorization", malformed),))) == (
                    grpc.StatusCode.UNAUTHENTICATED
                ), (method, malformed)
            for wrong in ("Bearer nope", "Bearer " + credential + "x"):
                assert await code_of(call((("authorization", wrong),))) == (
                    grpc.StatusCode.PERMISSION_DENIED
                ), (method, wrong)
            good = (("authorization", f"Bearer {credential}"),)
            assert await code_of(call(good)) == PAST_THE_GUARD[method], method
        if admin_token is not None:  # a separate admin token replaces the cluster secret
            remove = admin_calls(cluster)["MemberRemove"]
            denied = await code_of(remove((("authorization", f"Bearer {SECRET}"),)))
            assert denied == grpc.StatusCode.PERMISSION_DENIED
        # Reads stay open.
        status = await cluster.Status(cluster_pb2.StatusRequest())
        assert status.has_quorum
        await cluster.MemberList(cluster_pb2.MemberListRequest())


async def test_cluster_changes_need_no_credential_in_dev(dev_node: RunningService) -> None:
    cluster: cluster_pb2_grpc.ClusterServiceAsyncStub = cluster_pb2_grpc.ClusterServiceStub(
        dev_node.channel
    )
    for method, call in admin_calls(cluster).items():
        assert await code_of(call(())) == PAST_THE_GUARD[method], method
