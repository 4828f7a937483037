"""ElectionService: leader election by name, on leases (election.proto, K-8).

Leadership of election E is the lease "_election/E" held by the candidate id;
its fencing token is the term's token and its value is the published value.
There is no second leadership mechanism: everything here is a lease call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from marquee.coordinator.v1 import election_pb2, election_pb2_grpc
from marquee_coordinator.errors import LeaseNotHeld
from marquee_coordinator.headers import header, seconds, timestamp
from marquee_coordinator.lifecycle import Stopping
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.state import EventKind, Lease
from marquee_coordinator.status_mapping import mapped_errors
from marquee_coordinator.validation import ELECTION_PREFIX, Violations
from marquee_coordinator.waiting import WaitQueues, acquire_when_free

Context = grpc.aio.ServicerContext[Any, Any]
PREFIX = ELECTION_PREFIX


def lease_name(election: str) -> str:
    return PREFIX + election


def leader_key(lease: Lease) -> election_pb2.LeaderKey:
    return election_pb2.LeaderKey(
        election=lease.name.removeprefix(PREFIX),
        candidate_id=lease.holder,
        token=lease.token,
        lease_name=lease.name,
    )


def election_leader(lease: Lease) -> election_pb2.ElectionLeader:
    message = election_pb2.ElectionLeader(
        key=leader_key(lease), value=lease.value, elected_revision=lease.acquired_revision
    )
    if lease.acquired_at:
        message.elected_at.CopyFrom(timestamp(lease.acquired_at))
    return message


class ElectionServicer(election_pb2_grpc.ElectionServiceServicer):
    def __init__(self, node: LeaseNode, stopping: Stopping, queues: WaitQueues) -> None:
        self.node = node
        self.stopping = stopping
        self.queues = queues

    async def Campaign(
        self, request: election_pb2.CampaignRequest, context: Context
    ) -> election_pb2.CampaignResponse:
        check = Violations()
        check.key("election", request.election)
        check.key("candidate_id", request.candidate_id)
        check.key("request_id", request.request_id, required=False)
        check.ttl("ttl", request.ttl, self.node.config.timing.min_lease_ttl)
        check.raise_if_any()
        with mapped_errors():
            # Bounded by the call's deadline: its cancellation withdraws the candidacy.
            lease = await self.stopping.run(
                acquire_when_free(
                    self.node,
                    self.queues,
                    lease_name(request.election),
                    request.candidate_id,
                    seconds(request.ttl),
                    request.request_id,
                    request.value,
                )
            )
        return election_pb2.CampaignResponse(header=header(self.node), leader=leader_key(lease))

    async def Proclaim(
        self, request: election_pb2.ProclaimRequest, context: Context
    ) -> election_pb2.ProclaimResponse:
        key = request.leader
        self._check_key(key)
        with mapped_errors():
            try:
                await self.node.renew(
                    key.lease_name, key.candidate_id, key.token, value=request.value
                )
            except LeaseNotHeld:
                return election_pb2.ProclaimResponse(header=header(self.node), proclaimed=False)
        return election_pb2.ProclaimResponse(header=header(self.node), proclaimed=True)

    async def Leader(
        self, request: election_pb2.LeaderRequest, context: Context
    ) -> election_pb2.LeaderResponse:
        check = Violations()
        check.key("election", request.election)
        check.raise_if_any()
        with mapped_errors():
            self.node.require_serving()
            lease = await self.node.get(lease_name(request.election))
        response = election_pb2.LeaderResponse(header=header(self.node), found=lease is not None)
        if lease is not None:
            response.leader.CopyFrom(election_leader(lease))
        return response

    async def Observe(
        self, request: election_pb2.ObserveRequest, context: Context
    ) -> AsyncIterator[election_pb2.ObserveResponse]:
        check = Violations()
        check.key("election", request.election)
        check.raise_if_any()
        name = lease_name(request.election)
        with mapped_errors():
            self.node.require_serving()
            revision, held = self.node.snapshot(name)
            current = next((lease for lease in held if lease.name == name), None)
            yield self._observed(current)
            async for event in self.stopping.iterate(self.node.watch(revision)):
                if event.lease.name != name:
                    continue
                if event.kind is EventKind.RENEWED:
                    # A renewal is no change of leader; a new value is (Proclaim).
                    if current is not None and event.lease.value == current.value:
                        current = event.lease
                        continue
                    current = event.lease
                elif event.kind is EventKind.ACQUIRED:
                    current = event.lease
                else:
                    current = None
                yield self._observed(current)

    def _observed(self, lease: Lease | None) -> election_pb2.ObserveResponse:
        response = election_pb2.ObserveResponse(header=header(self.node), found=lease is not None)
        if lease is not None:
            response.leader.CopyFrom(election_leader(lease))
        return response

    async def Resign(
        self, request: election_pb2.ResignRequest, context: Context
    ) -> election_pb2.ResignResponse:
        key = request.leader
        self._check_key(key)
        with mapped_errors():
            try:
                await self.node.release(key.lease_name, key.candidate_id, key.token)
            except LeaseNotHeld:
                return election_pb2.ResignResponse(header=header(self.node), resigned=False)
        return election_pb2.ResignResponse(header=header(self.node), resigned=True)

    @staticmethod
    def _check_key(key: election_pb2.LeaderKey) -> None:
        check = Violations()
        check.key("leader.candidate_id", key.candidate_id)
        check.key("leader.lease_name", key.lease_name)
        check.check(
            key.lease_name == lease_name(key.election),
            "leader.lease_name",
            f"must be {PREFIX}<election> (got {key.lease_name!r})",
        )
        check.check(key.token > 0, "leader.token", "must be the token Campaign returned")
        check.raise_if_any()
