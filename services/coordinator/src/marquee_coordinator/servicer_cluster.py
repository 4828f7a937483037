"""ClusterService: membership, status and leadership transfer (cluster.proto, K-3).

Changes (MemberAdd, MemberRemove, TransferLeadership) need the admin credential
outside the dev profile (admin_auth.py); reads (MemberList, Status) are open.

A member's id is its node id (MARQUEE_COORDINATOR_NODE_ID) in decimal, so the
id MemberAdd records is the one the new node registers itself under.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Any

import grpc

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc
from marquee_coordinator.admin_auth import AdminGuard
from marquee_coordinator.errors import UnknownMember
from marquee_coordinator.headers import duration, header
from marquee_coordinator.membership import MemberView, Role
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.settings import check_address
from marquee_coordinator.state import Member
from marquee_coordinator.status_mapping import mapped_errors
from marquee_coordinator.validation import Violations

Context = grpc.aio.ServicerContext[Any, Any]

ROLES = {
    Role.LEADER: cluster_pb2.MEMBER_ROLE_LEADER,
    Role.FOLLOWER: cluster_pb2.MEMBER_ROLE_FOLLOWER,
    Role.CANDIDATE: cluster_pb2.MEMBER_ROLE_CANDIDATE,
}
# How long a transfer's answer waits for the new leader to name itself (its epoch).
NAMED_LEADER_WAIT = 2.0


def _version() -> str:
    try:
        return importlib.metadata.version("marquee-coordinator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, node: LeaseNode, admin: AdminGuard) -> None:
        self.node = node
        self.admin = admin

    def _member(self, view: MemberView) -> cluster_pb2.Member:
        alive = (
            view.last_contact is None or view.last_contact <= self.node.config.timing.election_max
        )
        message = cluster_pb2.Member(
            id=view.id,
            raft_address=view.raft_address,
            grpc_address=view.grpc_address,
            role=ROLES[view.role],
            healthy=view.connected and alive,
            connected=view.connected,
        )
        if view.last_contact is not None:
            message.last_contact.CopyFrom(duration(view.last_contact))
        return message

    def _members(self) -> list[cluster_pb2.Member]:
        return [self._member(view) for view in self.node.members()]

    async def MemberList(
        self, request: cluster_pb2.MemberListRequest, context: Context
    ) -> cluster_pb2.MemberListResponse:
        return cluster_pb2.MemberListResponse(header=header(self.node), members=self._members())

    async def MemberAdd(
        self, request: cluster_pb2.MemberAddRequest, context: Context
    ) -> cluster_pb2.MemberAddResponse:
        self.admin.check(context, "MemberAdd")
        check = Violations()
        check.check(
            request.id.isdigit() and int(request.id) > 0,
            "id",
            "must be the new node's MARQUEE_COORDINATOR_NODE_ID (a positive integer)",
        )
        for field in ("raft_address", "grpc_address"):
            check.check(_is_address(getattr(request, field)), field, "must be host:port")
        check.check(not request.learner, "learner", "learners are not supported")
        check.raise_if_any()
        member = Member(str(int(request.id)), request.raft_address, request.grpc_address)
        with mapped_errors():
            views = await self.node.add_member(member)
        added = next(v for v in views if v.raft_address == member.raft_address)
        return cluster_pb2.MemberAddResponse(
            header=header(self.node),
            member=self._member(added),
            members=[self._member(v) for v in views],
        )

    async def MemberRemove(
        self, request: cluster_pb2.MemberRemoveRequest, context: Context
    ) -> cluster_pb2.MemberRemoveResponse:
        self.admin.check(context, "MemberRemove")
        check = Violations()
        check.key("id", request.id)
        check.raise_if_any()
        with mapped_errors():
            views = await self.node.remove_member(request.id)
        return cluster_pb2.MemberRemoveResponse(
            header=header(self.node), members=[self._member(v) for v in views]
        )

    async def TransferLeadership(
        self, request: cluster_pb2.TransferLeadershipRequest, context: Context
    ) -> cluster_pb2.TransferLeadershipResponse:
        self.admin.check(context, "TransferLeadership")
        with mapped_errors():
            self.node.require_serving()
            target = None
            if request.target_id:
                found = [v for v in self.node.members() if v.id == request.target_id]
                if not found:
                    raise UnknownMember(f"no member with id {request.target_id!r}")
                target = found[0].raft_address
            await self.node.transfer_leadership(target)
        await self._until_leader_named()
        return cluster_pb2.TransferLeadershipResponse(
            header=header(self.node), previous_leader_id=self.node.member_id
        )

    async def _until_leader_named(self) -> None:
        """Wait (briefly) until the new leader's epoch reached us, so the header names it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NAMED_LEADER_WAIT
        while loop.time() < deadline:
            if self.node.view().leader_id not in ("", self.node.member_id):
                return
            await asyncio.sleep(0.002)

    async def Status(
        self, request: cluster_pb2.StatusRequest, context: Context
    ) -> cluster_pb2.StatusResponse:
        status = self.node.status()
        members = self.node.members()
        me = next(v for v in members if v.raft_address == self.node.address)
        has_quorum = self.node.has_leader()
        problems = [] if has_quorum else ["no leader with a quorum is known to this member"]
        return cluster_pb2.StatusResponse(
            header=header(self.node),
            member=self._member(me),
            members=[self._member(v) for v in members],
            raft_commit_index=status.commit_index,
            raft_applied_index=status.last_applied,
            has_quorum=has_quorum,
            storage_size_bytes=self.node.storage_bytes(),
            lease_count=len(self.node.local_leases()),
            version=_version(),
            errors=problems,
        )


def _is_address(value: str) -> bool:
    try:
        check_address(value)
    except ValueError:
        return False
    return True
