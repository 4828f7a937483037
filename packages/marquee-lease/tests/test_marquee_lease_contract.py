"""The same cases against the fake coordinator and a real 3-node cluster.

This pins the fake (fake_coordinator.py) to the real server: every behaviour the
client's other tests rely on from the fake is checked here against both. Cases
use fresh names and only reversible changes (a member added is removed again),
as the real cluster is the session's shared `coordinator_cluster`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from fake_coordinator import FakeCluster
from typer.testing import CliRunner, Result

from marquee.coordinator.v1 import election_pb2, election_pb2_grpc, lease_pb2, lease_pb2_grpc
from marquee_cli.main import app
from marquee_lease import (
    Backoff,
    ClusterStatus,
    CoordinatorClient,
    CoordinatorError,
    RequestRejected,
)
from marquee_lease.transport import LEADER_METADATA_KEY
from marquee_localservers import free_port
from marquee_testing.coordinator import CoordinatorCluster

FAST = Backoff(initial=0.02, maximum=0.2)
TTL = 30.0
runner = CliRunner()


@dataclass
class Backend:
    kind: str
    endpoints: list[str]


@pytest.fixture(params=["fake", "real"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "fake":
        fake = FakeCluster()
        await fake.start(3)
        try:
            yield Backend("fake", fake.endpoints)
        finally:
            await fake.stop()
        return
    real: CoordinatorCluster = request.getfixturevalue("coordinator_cluster")
    await asyncio.to_thread(real.wait_for_leader)
    yield Backend("real", real.endpoints)


@pytest.fixture
async def client(backend: Backend) -> AsyncIterator[CoordinatorClient]:
    async with CoordinatorClient(backend.endpoints, backoff=FAST) as coordinator:
        yield coordinator


def fresh(prefix: str) -> str:
    # The real cluster is shared by the session: no case may meet another's names.
    return f"contract/{prefix}/{uuid.uuid4().hex[:8]}"


async def settled_status(client: CoordinatorClient, backend: Backend) -> ClusterStatus:
    """The leader's status once every member is known with its gRPC address."""
    async with asyncio.timeout(30):
        while True:
            try:
                status = await client.cluster_status(timeout=2.0)
            except CoordinatorError:
                status = None
            if (
                status is not None
                and status.has_quorum
                and status.member.grpc_address == status.header.leader_address
                and sorted(m.grpc_address for m in status.members) == sorted(backend.endpoints)
            ):
                return status
            await asyncio.sleep(0.05)  # polls the condition: members register through the log


# -- the lease contract -------------------------------------------------------------------


async def test_a_follower_answers_failed_precondition_naming_the_leader(
    backend: Backend, client: CoordinatorClient
) -> None:
    leader = (await settled_status(client, backend)).header.leader_address
    follower = next(address for address in backend.endpoints if address != leader)
    async with grpc.aio.insecure_channel(follower) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lease_pb2_grpc.LeaseServiceStub(channel).Get(
                lease_pb2.GetRequest(name=fresh("redirect")), timeout=5
            )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (LEADER_METADATA_KEY, leader) in list(caught.value.trailing_metadata() or ())


async def test_acquiring_what_you_hold_renews_it_and_keeps_the_token(
    client: CoordinatorClient,
) -> None:
    name = fresh("reacquire")
    first = await client.acquire(name, "holder", TTL)
    assert first.acquired
    assert first.lease is not None
    again = await client.acquire(name, "holder", TTL / 2)
    assert again.acquired
    assert again.lease is not None
    assert again.lease.token == first.lease.token
    assert again.lease.ttl == TTL / 2
    other = await client.acquire(name, "other", TTL)
    assert not other.acquired
    assert other.lease is not None
    assert (other.lease.holder_id, other.lease.token) == ("holder", first.lease.token)
    assert await client.release(name, "holder", first.lease.token)
    assert not await client.release(name, "holder", first.lease.token)
    # Tokens grow across a release: the next grant is fenced apart from the last.
    after = await client.acquire(name, "holder", TTL)
    assert after.lease is not None
    assert after.lease.token == first.lease.token + 1
    assert await client.release(name, "holder", after.lease.token)


async def test_a_retried_acquire_gets_its_grant_back_only_while_it_stands(
    client: CoordinatorClient,
) -> None:
    name, request_id = fresh("retry"), uuid.uuid4().hex
    granted = await client.acquire(name, "holder", TTL, request_id=request_id)
    assert granted.acquired
    assert granted.lease is not None
    replayed = await client.acquire(name, "holder", TTL, request_id=request_id)
    assert replayed.acquired
    assert replayed.lease is not None
    assert replayed.lease.token == granted.lease.token
    assert await client.release(name, "holder", granted.lease.token)
    # The grant is over: its retry must not make the caller believe it holds the name.
    late = await client.acquire(name, "holder", TTL, request_id=request_id)
    assert not late.acquired
    assert late.lease is None
    assert await client.get(name) is None


async def test_a_renewal_with_another_token_is_refused(client: CoordinatorClient) -> None:
    name = fresh("renew")
    granted = await client.acquire(name, "holder", TTL)
    assert granted.lease is not None
    token = granted.lease.token
    wrong = await client.renew(name, "holder", token + 5)
    assert not wrong.renewed
    assert wrong.lease is not None
    assert wrong.lease.token == token
    right = await client.renew(name, "holder", token)
    assert right.renewed
    assert await client.release(name, "holder", token)


async def test_an_observe_stream_goes_on_after_its_member_stops_leading(
    backend: Backend, client: CoordinatorClient
) -> None:
    election = fresh("observe")
    before = await settled_status(client, backend)
    old_leader = before.header.leader_address
    async with grpc.aio.insecure_channel(old_leader) as channel:
        stream = election_pb2_grpc.ElectionServiceStub(channel).Observe(
            election_pb2.ObserveRequest(election=election), timeout=30
        )
        first = await stream.read()
        assert isinstance(first, election_pb2.ObserveResponse)
        assert not first.found
        moved = await client.transfer_leadership(timeout=10)
        assert moved.previous_leader_id == before.member.id
        assert moved.leader_address not in ("", old_leader)
        key = await client.campaign_once(election, "a", b"value-a", TTL, timeout=10)
        try:
            # The old leader, now a follower, still reports the change: no redirect.
            async with asyncio.timeout(10):
                change = await stream.read()
            assert isinstance(change, election_pb2.ObserveResponse)
            assert change.found
            assert (change.leader.key.candidate_id, change.leader.value) == ("a", b"value-a")
        finally:
            stream.cancel()
            await client.resign(key)


# -- the CLI, through its typer app ---------------------------------------------------------


async def marquee(*args: str) -> Result:
    # The commands call asyncio.run: a worker thread, off this loop (the fake's).
    return await asyncio.to_thread(runner.invoke, app, list(args))


def document(result: Result) -> Any:
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def target(backend: Backend, leader: str) -> list[str]:
    # Followers first: every command has to find the leader itself.
    ordered = [a for a in backend.endpoints if a != leader] + [leader]
    return ["--endpoints", ",".join(ordered), "--timeout", "10"]


async def test_cli_cluster_status_names_every_member_and_the_leader(
    backend: Backend, client: CoordinatorClient
) -> None:
    settled = await settled_status(client, backend)
    leader = settled.header.leader_address
    result = await marquee("cluster", "status", "--json", *target(backend, leader))
    assert result.exit_code == 0, result.output
    status = document(result)
    assert status["has_quorum"]
    assert status["leader"] == {"id": settled.header.leader_id, "address": leader}
    assert status["answered_by"] == settled.header.leader_id
    members = {m["address"]: (m["id"], m["role"]) for m in status["members"]}
    assert set(members) == set(backend.endpoints)
    assert [a for a, (_, role) in members.items() if role == "leader"] == [leader]
    text = await marquee("cluster", "status", *target(backend, leader))
    assert text.exit_code == 0, text.output
    assert f"leader {settled.header.leader_id} at {leader}" in text.stdout


async def test_cli_join_and_leave_a_member(backend: Backend, client: CoordinatorClient) -> None:
    leader = (await settled_status(client, backend)).header.leader_address
    member_id = str(100 + int(uuid.uuid4().int % 900))
    # Nothing runs there: three live members of four still commit both changes.
    raft, api = f"127.0.0.1:{free_port('127.0.0.1')}", f"127.0.0.1:{free_port('127.0.0.1')}"
    join = ["cluster", "join", member_id, "--raft-address", raft, "--grpc-address", api]
    joined = await marquee(*join, "--json", *target(backend, leader))
    assert joined.exit_code == 0, joined.output
    try:
        added = document(joined)
        assert (added["added"]["id"], added["added"]["address"]) == (member_id, api)
        assert member_id in [m["id"] for m in added["members"]]
        again = await marquee(*join, *target(backend, leader))
        assert again.exit_code == 1
        assert "already exists" in again.output
    finally:
        left = await marquee("cluster", "leave", member_id, "--json", *target(backend, leader))
    assert left.exit_code == 0, left.output
    remaining = [m["id"] for m in document(left)["members"]]
    assert member_id not in remaining
    assert len(remaining) == len(backend.endpoints)
    unknown = await marquee("cluster", "leave", member_id, *target(backend, leader))
    assert unknown.exit_code == 1
    assert "no member with id" in unknown.output


async def test_cli_transfer_moves_the_leadership(
    backend: Backend, client: CoordinatorClient
) -> None:
    settled = await settled_status(client, backend)
    old = settled.header.leader_id
    new = next(m for m in settled.members if m.id != old)
    moved = await marquee(
        "cluster", "transfer", new.id, "--json", *target(backend, settled.header.leader_address)
    )
    assert moved.exit_code == 0, moved.output
    assert document(moved) == {
        "previous_leader_id": old,
        "leader": {"id": new.id, "address": new.grpc_address},
    }
    after = await settled_status(client, backend)
    assert after.header.leader_id == new.id


async def test_cli_lease_acquire_get_list_release(
    backend: Backend, client: CoordinatorClient
) -> None:
    leader = (await settled_status(client, backend)).header.leader_address
    where = target(backend, leader)
    name = fresh("cli")
    acquired = await marquee(
        "lease", "acquire", name, "--ttl", "30", "--holder", "ops", "--json", *where
    )
    assert acquired.exit_code == 0, acquired.output
    lease = document(acquired)["lease"]
    assert (lease["name"], lease["holder_id"]) == (name, "ops")
    token = lease["token"]

    taken = await marquee("lease", "acquire", name, "--ttl", "30", "--holder", "x", *where)
    assert taken.exit_code == 1
    assert "held by ops" in taken.output

    got = await marquee("lease", "get", name, "--json", *where)
    assert document(got)["lease"]["holder_id"] == "ops"
    prefix = name.rsplit("/", 1)[0] + "/"
    listed = await marquee("lease", "list", "--prefix", prefix, *where)
    assert name in listed.stdout
    assert "ops" in listed.stdout

    wrong = await marquee(
        "lease", "release", name, "--token", str(token + 7), "--holder", "ops", *where
    )
    assert wrong.exit_code == 1
    released = await marquee(
        "lease", "release", name, "--token", str(token), "--holder", "ops", "--json", *where
    )
    assert document(released) == {"released": True}
    gone = await marquee("lease", "get", name, *where)
    assert gone.exit_code == 1
    assert "nobody holds" in gone.output


async def test_an_elections_lease_is_kept_by_proclaim_not_by_the_lease_api(
    client: CoordinatorClient,
) -> None:
    election = fresh("election")
    key = await client.campaign_once(election, "a", b"value-a", TTL, timeout=10)
    try:
        with pytest.raises(RequestRejected) as caught:
            await client.renew(key.lease_name, "a", key.token)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        kept = await client.renew_leadership(key, b"value-a")
        assert kept.renewed
        leader = await client.leader(election)
        assert leader is not None
        assert (leader.key.token, leader.value) == (key.token, b"value-a")
    finally:
        assert await client.resign(key)
    assert not (await client.renew_leadership(key, b"value-a")).renewed
