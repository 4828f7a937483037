"""An in-process stand-in for a coordinator cluster, for client-behaviour tests.

Every fake member is a real grpc.aio server on loopback serving the Lease,
Election and Cluster contracts over one shared in-memory state (as if Raft
were instant and perfect). One member is the leader; the others answer
leader-only calls FAILED_PRECONDITION with `x-marquee-leader`, as real
followers do. Faults are switches on the cluster: hang a member, lose answers
after applying them, make followers redirect in a loop, take leases away.

test_marquee_lease_contract.py runs the same cases against this and a real
cluster. Known, deliberate differences: no minimum TTL (tests use short ones
to run fast), no admin credential unless `admin_token` is set, and Watch is
not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from marquee.coordinator.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    election_pb2,
    election_pb2_grpc,
    header_pb2,
    lease_pb2,
    lease_pb2_grpc,
)

LEADER_KEY = "x-marquee-leader"
# Elections' leases: the real LeaseService refuses these names (INVALID_ARGUMENT).
ELECTION_PREFIX = "_election/"
Context = grpc.aio.ServicerContext[Any, Any]


def _seconds(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


def _duration(value: float) -> Duration:
    message = Duration()
    message.FromNanoseconds(round(max(0.0, value) * 1e9))
    return message


@dataclass
class FakeLease:
    name: str
    holder_id: str
    token: int
    ttl: float
    deadline: float
    acquired_revision: int
    modified_revision: int

    def to_proto(self) -> lease_pb2.Lease:
        return lease_pb2.Lease(
            name=self.name,
            holder_id=self.holder_id,
            token=self.token,
            ttl=_duration(self.ttl),
            remaining=_duration(self.deadline - time.monotonic()),
            acquired_revision=self.acquired_revision,
            modified_revision=self.modified_revision,
        )


@dataclass
class FakeMember:
    id: str
    address: str = ""
    raft_address: str = ""
    server: grpc.aio.Server | None = None
    # Every call to it waits until cancelled (a SIGSTOPped process).
    hung: bool = False
    # Where it redirects leader-only calls instead of the real leader (redirect loops).
    redirect_to: str | None = None


@dataclass
class FakeCluster:
    members: list[FakeMember] = field(default_factory=list)
    leader_id: str | None = None
    term: int = 1
    revision: int = 0
    leases: dict[str, FakeLease] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    # (name, holder, request id) -> the first answer, for retries.
    answered: dict[tuple[str, str, str], lease_pb2.AcquireResponse] = field(default_factory=dict)
    values: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    grants: int = 0
    renewals: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Apply the next N acquires/renewals, then answer UNAVAILABLE (the answer was lost).
    lose_answers: int = 0
    refuse_renewals: bool = False
    # Set: MemberAdd/MemberRemove/TransferLeadership need `authorization: Bearer <it>`.
    admin_token: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- set-up ------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [m.address for m in self.members if m.server is not None]

    @property
    def leader(self) -> FakeMember | None:
        return next((m for m in self.members if m.id == self.leader_id), None)

    def member(self, member_id: str) -> FakeMember:
        return next(m for m in self.members if m.id == member_id)

    def followers(self) -> list[FakeMember]:
        return [m for m in self.members if m.id != self.leader_id and m.server is not None]

    async def start(self, size: int = 3) -> None:
        for i in range(size):
            # Ids are node ids, as on the real coordinator (MARQUEE_COORDINATOR_NODE_ID).
            member = FakeMember(id=str(i + 1), raft_address=f"127.0.0.1:{60000 + i}")
            server = grpc.aio.server()
            lease_pb2_grpc.add_LeaseServiceServicer_to_server(FakeLeases(self, member), server)
            election_pb2_grpc.add_ElectionServiceServicer_to_server(
                FakeElections(self, member), server
            )
            cluster_pb2_grpc.add_ClusterServiceServicer_to_server(
                FakeClusterService(self, member), server
            )
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            member.address, member.server = f"127.0.0.1:{port}", server
            self.members.append(member)
        self.leader_id = self.members[0].id

    async def stop(self) -> None:
        for member in self.members:
            if member.server is not None:
                await member.server.stop(grace=None)
                member.server = None

    def elect(self, member_id: str | None) -> None:
        self.leader_id = member_id
        self.term += 1
        self._changed()

    # -- state -------------------------------------------------------------------------

    def _changed(self) -> None:
        self.revision += 1
        self.changed.set()
        self.changed = asyncio.Event()

    def current(self, name: str) -> FakeLease | None:
        lease = self.leases.get(name)
        if lease is not None and lease.deadline <= time.monotonic():
            del self.leases[name]
            self._changed()
            return None
        return lease

    def revoke(self, name: str) -> None:
        """The lease is gone (expired or taken over) without its holder knowing."""
        self.leases.pop(name, None)
        self._changed()

    def grant(self, name: str, holder_id: str, ttl: float) -> FakeLease:
        self.tokens[name] = self.tokens.get(name, 0) + 1
        self.grants += 1
        self._changed()
        lease = FakeLease(
            name,
            holder_id,
            self.tokens[name],
            ttl,
            time.monotonic() + ttl,
            self.revision,
            self.revision,
        )
        self.leases[name] = lease
        return lease

    def header(self, member: FakeMember) -> header_pb2.ResponseHeader:
        leader = self.leader
        return header_pb2.ResponseHeader(
            cluster_id="fake",
            member_id=member.id,
            raft_term=self.term,
            revision=self.revision,
            leader_id=leader.id if leader else "",
            leader_address=leader.address if leader else "",
        )

    async def gate(
        self, member: FakeMember, context: Context, method: str, leader_only: bool
    ) -> None:
        """What every call goes through first: hangs, redirects and missing leaders."""
        self.calls.append((member.id, method))
        if member.hung:
            await asyncio.Event().wait()
        if not leader_only or (member.id == self.leader_id and member.redirect_to is None):
            return
        target = member.redirect_to or (self.leader.address if self.leader else "")
        if not target:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader")
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION, "not the leader", ((LEADER_KEY, target),)
        )

    async def lease_api(self, member: FakeMember, context: Context, method: str, name: str) -> None:
        """A LeaseService call: leader-only, and never about an election's lease."""
        await self.gate(member, context, method, leader_only=True)
        if name.startswith(ELECTION_PREFIX):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid argument: name must not start with {ELECTION_PREFIX!r}",
            )

    async def admin(self, member: FakeMember, context: Context, method: str) -> None:
        """A cluster change: leader-only, and guarded by the admin credential if set."""
        await self.gate(member, context, method, leader_only=True)
        if self.admin_token is None:
            return
        given = dict(context.invocation_metadata() or ()).get("authorization")
        if given is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{method} needs a credential")
        if given != f"Bearer {self.admin_token}":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method}: wrong credential")

    async def maybe_lose_answer(self, context: Context) -> None:
        if self.lose_answers > 0:
            self.lose_answers -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "answer lost on the way")


class FakeLeases(lease_pb2_grpc.LeaseServiceServicer):
    def __init__(self, cluster: FakeCluster, member: FakeMember) -> None:
        self.c, self.m = cluster, member

    async def Acquire(
        self, request: lease_pb2.AcquireRequest, context: Context
    ) -> lease_pb2.AcquireResponse:
        await self.c.lease_api(self.m, context, "Acquire", request.name)
        key = (request.name, request.holder_id, request.request_id)
        if request.request_id and key in self.c.answered:
            answered = self.c.answered[key]
            current = self.c.current(request.name)
            if current is not None and current.token == answered.lease.token:
                return answered
            # As the real server: once the grant is over (released, expired, taken
            # over), its retry is answered "not acquired", never granted again.
            return lease_pb2.AcquireResponse(
                header=self.c.header(self.m),
                acquired=False,
                lease=current.to_proto() if current else None,
            )
        deadline = time.monotonic() + _seconds(request.wait_timeout)
        while True:
            changed = self.c.changed
            current = self.c.current(request.name)
            if current is None or current.holder_id == request.holder_id:
                break
            if time.monotonic() >= deadline:
                return lease_pb2.AcquireResponse(
                    header=self.c.header(self.m), acquired=False, lease=current.to_proto()
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(0.05, deadline - time.monotonic()))
        if current is None:
            lease = self.c.grant(request.name, request.holder_id, _seconds(request.ttl))
        else:
            # Acquiring what you hold renews it with the new TTL and keeps the token.
            lease = current
            lease.ttl = _seconds(request.ttl)
            lease.deadline = time.monotonic() + lease.ttl
        response = lease_pb2.AcquireResponse(
            header=self.c.header(self.m), acquired=True, lease=lease.to_proto()
        )
        if request.request_id:
            self.c.answered[key] = response
        await self.c.maybe_lose_answer(context)
        return response

    async def Renew(
        self, request: lease_pb2.RenewRequest, context: Context
    ) -> lease_pb2.RenewResponse:
        await self.c.lease_api(self.m, context, "Renew", request.name)
        current = self.c.current(request.name)
        header = self.c.header(self.m)
        if (
            self.c.refuse_renewals
            or current is None
            or (current.holder_id, current.token) != (request.holder_id, request.token)
        ):
            return lease_pb2.RenewResponse(
                header=header, renewed=False, lease=current.to_proto() if current else None
            )
        if request.HasField("ttl"):
            current.ttl = _seconds(request.ttl)
        current.deadline = time.monotonic() + current.ttl
        self.c.renewals += 1
        self.c._changed()
        current.modified_revision = self.c.revision
        await self.c.maybe_lose_answer(context)
        return lease_pb2.RenewResponse(header=header, renewed=True, lease=current.to_proto())

    async def Release(
        self, request: lease_pb2.ReleaseRequest, context: Context
    ) -> lease_pb2.ReleaseResponse:
        await self.c.lease_api(self.m, context, "Release", request.name)
        current = self.c.current(request.name)
        held = current is not None and (current.holder_id, current.token) == (
            request.holder_id,
            request.token,
        )
        if held:
            self.c.revoke(request.name)
        return lease_pb2.ReleaseResponse(header=self.c.header(self.m), released=held)

    async def Get(self, request: lease_pb2.GetRequest, context: Context) -> lease_pb2.GetResponse:
        await self.c.lease_api(self.m, context, "Get", request.name)
        current = self.c.current(request.name)
        return lease_pb2.GetResponse(
            header=self.c.header(self.m),
            found=current is not None,
            lease=current.to_proto() if current else None,
        )

    async def List(
        self, request: lease_pb2.ListRequest, context: Context
    ) -> lease_pb2.ListResponse:
        await self.c.gate(self.m, context, "List", leader_only=True)
        names = sorted(n for n in list(self.c.leases) if n.startswith(request.prefix))
        held = [lease for n in names if (lease := self.c.current(n)) is not None]
        limit = request.limit or 1000
        return lease_pb2.ListResponse(
            header=self.c.header(self.m),
            leases=[lease.to_proto() for lease in held[:limit]],
            more=len(held) > limit,
        )

    async def KeepAlive(
        self, request_iterator: AsyncIterator[lease_pb2.KeepAliveRequest], context: Context
    ) -> AsyncIterator[lease_pb2.KeepAliveResponse]:
        await self.c.gate(self.m, context, "KeepAlive", leader_only=True)
        async for request in request_iterator:
            if request.name.startswith(ELECTION_PREFIX):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an election's lease")
            current = self.c.current(request.name)
            alive = current is not None and (current.holder_id, current.token) == (
                request.holder_id,
                request.token,
            )
            if current is not None and alive:
                current.deadline = time.monotonic() + current.ttl
            yield lease_pb2.KeepAliveResponse(
                header=self.c.header(self.m),
                name=request.name,
                token=request.token,
                alive=alive,
                remaining=_duration(current.ttl if current is not None and alive else 0.0),
            )

    async def Watch(
        self, request: lease_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[lease_pb2.WatchResponse]:
        # Not used by the client; here to satisfy the contract.
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        nothing: list[lease_pb2.WatchResponse] = []
        for response in nothing:
            yield response


class FakeElections(election_pb2_grpc.ElectionServiceServicer):
    def __init__(self, cluster: FakeCluster, member: FakeMember) -> None:
        self.c, self.m = cluster, member

    def _leader(self, election: str) -> election_pb2.ElectionLeader | None:
        lease = self.c.current(f"_election/{election}")
        if lease is None:
            return None
        value, revision = self.c.values.get(election, (b"", 0))
        key = election_pb2.LeaderKey(
            election=election,
            candidate_id=lease.holder_id,
            token=lease.token,
            lease_name=lease.name,
        )
        return election_pb2.ElectionLeader(key=key, value=value, elected_revision=revision)

    async def Campaign(
        self, request: election_pb2.CampaignRequest, context: Context
    ) -> election_pb2.CampaignResponse:
        await self.c.gate(self.m, context, "Campaign", leader_only=True)
        name = f"_election/{request.election}"
        while True:
            changed = self.c.changed
            current = self.c.current(name)
            if current is None:
                lease = self.c.grant(name, request.candidate_id, _seconds(request.ttl))
                self.c.values[request.election] = (request.value, self.c.revision)
                break
            if current.holder_id == request.candidate_id:
                lease = current
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.05)
        key = election_pb2.LeaderKey(
            election=request.election,
            candidate_id=request.candidate_id,
            token=lease.token,
            lease_name=name,
        )
        return election_pb2.CampaignResponse(header=self.c.header(self.m), leader=key)

    def _is_leader(self, key: election_pb2.LeaderKey) -> bool:
        current = self.c.current(key.lease_name)
        return current is not None and (current.holder_id, current.token) == (
            key.candidate_id,
            key.token,
        )

    async def Proclaim(
        self, request: election_pb2.ProclaimRequest, context: Context
    ) -> election_pb2.ProclaimResponse:
        await self.c.gate(self.m, context, "Proclaim", leader_only=True)
        ok = self._is_leader(request.leader)
        if ok:
            # Like the real server, a Proclaim renews the election's lease.
            lease = self.c.leases[request.leader.lease_name]
            lease.deadline = time.monotonic() + lease.ttl
            self.c.renewals += 1
            self.c._changed()
            election = request.leader.election
            _, revision = self.c.values.get(election, (b"", 0))
            self.c.values[election] = (request.value, revision)
        return election_pb2.ProclaimResponse(header=self.c.header(self.m), proclaimed=ok)

    async def Leader(
        self, request: election_pb2.LeaderRequest, context: Context
    ) -> election_pb2.LeaderResponse:
        await self.c.gate(self.m, context, "Leader", leader_only=True)
        leader = self._leader(request.election)
        return election_pb2.LeaderResponse(
            header=self.c.header(self.m), found=leader is not None, leader=leader
        )

    async def Observe(
        self, request: election_pb2.ObserveRequest, context: Context
    ) -> AsyncIterator[election_pb2.ObserveResponse]:
        await self.c.gate(self.m, context, "Observe", leader_only=True)
        # Like a real member, it goes on streaming after it stops leading (followers
        # apply the same log), and only changes of leader or value. A hung member,
        # like a paused process, sends nothing: its stream just goes quiet.
        first, sent = True, None
        while True:
            changed = self.c.changed
            leader = self._leader(request.election)
            if not self.m.hung and (first or leader != sent):
                first, sent = False, leader
                yield election_pb2.ObserveResponse(
                    header=self.c.header(self.m), found=leader is not None, leader=leader
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.05)

    async def Resign(
        self, request: election_pb2.ResignRequest, context: Context
    ) -> election_pb2.ResignResponse:
        await self.c.gate(self.m, context, "Resign", leader_only=True)
        ok = self._is_leader(request.leader)
        if ok:
            self.c.revoke(request.leader.lease_name)
        return election_pb2.ResignResponse(header=self.c.header(self.m), resigned=ok)


class FakeClusterService(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, cluster: FakeCluster, member: FakeMember) -> None:
        self.c, self.m = cluster, member

    def _member(self, member: FakeMember) -> cluster_pb2.Member:
        role = (
            cluster_pb2.MEMBER_ROLE_LEADER
            if member.id == self.c.leader_id
            else cluster_pb2.MEMBER_ROLE_FOLLOWER
        )
        return cluster_pb2.Member(
            id=member.id,
            raft_address=member.raft_address,
            grpc_address=member.address,
            role=role,
            healthy=member.server is not None,
            connected=True,
        )

    def _members(self) -> list[cluster_pb2.Member]:
        return [self._member(m) for m in sorted(self.c.members, key=lambda m: m.id)]

    async def MemberList(
        self, request: cluster_pb2.MemberListRequest, context: Context
    ) -> cluster_pb2.MemberListResponse:
        await self.c.gate(self.m, context, "MemberList", leader_only=False)
        return cluster_pb2.MemberListResponse(header=self.c.header(self.m), members=self._members())

    async def MemberAdd(
        self, request: cluster_pb2.MemberAddRequest, context: Context
    ) -> cluster_pb2.MemberAddResponse:
        await self.c.admin(self.m, context, "MemberAdd")
        if not (request.id.isdigit() and int(request.id) > 0):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id must be a node id")
        if not (request.raft_address and request.grpc_address):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "addresses are required")
        if request.learner:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "learners are not supported")
        if any(
            m.id == request.id or m.raft_address == request.raft_address for m in self.c.members
        ):
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"member {request.id} ({request.raft_address}) already exists",
            )
        member = FakeMember(request.id, request.grpc_address, request.raft_address)
        self.c.members.append(member)
        self.c._changed()
        return cluster_pb2.MemberAddResponse(
            header=self.c.header(self.m), member=self._member(member), members=self._members()
        )

    async def MemberRemove(
        self, request: cluster_pb2.MemberRemoveRequest, context: Context
    ) -> cluster_pb2.MemberRemoveResponse:
        await self.c.admin(self.m, context, "MemberRemove")
        if not any(m.id == request.id for m in self.c.members):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no member with id {request.id!r}")
        self.c.members = [m for m in self.c.members if m.id != request.id]
        self.c._changed()
        return cluster_pb2.MemberRemoveResponse(
            header=self.c.header(self.m), members=self._members()
        )

    async def TransferLeadership(
        self, request: cluster_pb2.TransferLeadershipRequest, context: Context
    ) -> cluster_pb2.TransferLeadershipResponse:
        await self.c.admin(self.m, context, "TransferLeadership")
        previous = self.c.leader_id or ""
        target = request.target_id or next(m.id for m in self.c.followers())
        if target not in {m.id for m in self.c.members}:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no member with id {target!r}")
        self.c.elect(target)
        return cluster_pb2.TransferLeadershipResponse(
            header=self.c.header(self.m), previous_leader_id=previous
        )

    async def Status(
        self, request: cluster_pb2.StatusRequest, context: Context
    ) -> cluster_pb2.StatusResponse:
        await self.c.gate(self.m, context, "Status", leader_only=False)
        return cluster_pb2.StatusResponse(
            header=self.c.header(self.m),
            member=self._member(self.m),
            members=self._members(),
            raft_commit_index=self.c.revision,
            raft_applied_index=self.c.revision,
            has_quorum=self.c.leader_id is not None,
            lease_count=len(self.c.leases),
            version="fake",
        )
