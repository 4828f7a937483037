"""LeaseService: leases with fencing tokens over gRPC (lease.proto).

Every call is leader-only (reads too: they must be linearizable); a follower
answers FAILED_PRECONDITION naming the leader (status_mapping). Losing a lease
is an answer (acquired/renewed/released/alive = false), never an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from marquee.coordinator.v1 import lease_pb2, lease_pb2_grpc
from marquee_coordinator.encoded_renewals import RenewalAnswers
from marquee_coordinator.errors import GrantEnded, LeaseHeld, LeaseNotHeld
from marquee_coordinator.headers import (
    event_message,
    header,
    keepalive_response,
    lease_message,
    seconds,
)
from marquee_coordinator.lifecycle import Stopping
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.state import Lease
from marquee_coordinator.status_mapping import mapped_errors
from marquee_coordinator.validation import ELECTION_PREFIX, Violations
from marquee_coordinator.waiting import WaitQueues, acquire_when_free
from marquee_platform.encoded import pre_encoded

Context = grpc.aio.ServicerContext[Any, Any]
LIST_LIMIT = 1000


class LeaseServicer(lease_pb2_grpc.LeaseServiceServicer):
    def __init__(self, node: LeaseNode, stopping: Stopping, queues: WaitQueues) -> None:
        self.node = node
        self.stopping = stopping
        self.queues = queues
        self.answers = RenewalAnswers(node)

    async def Acquire(
        self, request: lease_pb2.AcquireRequest, context: Context
    ) -> lease_pb2.AcquireResponse:
        check = Violations()
        check.lease_name("name", request.name)
        check.key("holder_id", request.holder_id)
        check.key("request_id", request.request_id, required=False)
        check.ttl("ttl", request.ttl, self.node.config.timing.min_lease_ttl)
        check.check(seconds(request.wait_timeout) >= 0, "wait_timeout", "must not be negative")
        check.raise_if_any()
        ttl, wait = seconds(request.ttl), seconds(request.wait_timeout)
        args = (request.name, request.holder_id, ttl, request.request_id)
        with mapped_errors():
            try:
                if wait > 0:
                    async with asyncio.timeout(wait):
                        waiting = acquire_when_free(self.node, self.queues, *args)
                        lease = await self.stopping.run(waiting)
                else:
                    lease = await self.node.acquire(*args)
            except (LeaseHeld, GrantEnded) as held:
                # GrantEnded: a retry whose grant is over; not ours, whoever holds it now.
                return self._not_acquired(held.current)
            except TimeoutError:
                # Still held when the wait ran out: answer with whoever holds it now.
                _, leases = self.node.snapshot(request.name)
                current = next((x for x in leases if x.name == request.name), None)
                return self._not_acquired(current)
        return lease_pb2.AcquireResponse(
            header=header(self.node), acquired=True, lease=lease_message(self.node, lease)
        )

    def _not_acquired(self, current: Lease | None) -> lease_pb2.AcquireResponse:
        response = lease_pb2.AcquireResponse(header=header(self.node), acquired=False)
        if current is not None:
            response.lease.CopyFrom(lease_message(self.node, current))
        return response

    async def KeepAlive(
        self, request_iterator: AsyncIterator[lease_pb2.KeepAliveRequest], context: Context
    ) -> AsyncIterator[lease_pb2.KeepAliveResponse]:
        async for request in self.stopping.iterate(request_iterator):
            renewed = self._renewed_here(request.name, request.holder_id, request.token)
            if renewed is not None:
                yield pre_encoded(self.answers.keepalive(renewed), lease_pb2.KeepAliveResponse)
                continue
            check = Violations()
            check.lease_name("name", request.name)
            check.key("holder_id", request.holder_id)
            check.raise_if_any()
            with mapped_errors():
                try:
                    lease = await self.node.renew(request.name, request.holder_id, request.token)
                except LeaseNotHeld:
                    lease = None
            yield keepalive_response(self.node, request, lease)

    async def Renew(
        self, request: lease_pb2.RenewRequest, context: Context
    ) -> lease_pb2.RenewResponse:
        if not request.HasField("ttl"):
            renewed = self._renewed_here(request.name, request.holder_id, request.token)
            if renewed is not None:
                return pre_encoded(self.answers.renew(renewed), lease_pb2.RenewResponse)
        check = Violations()
        check.lease_name("name", request.name)
        check.key("holder_id", request.holder_id)
        check.ttl("ttl", request.ttl, self.node.config.timing.min_lease_ttl, required=False)
        check.raise_if_any()
        ttl = seconds(request.ttl) if request.HasField("ttl") else None
        with mapped_errors():
            try:
                lease = await self.node.renew(
                    request.name, request.holder_id, request.token, ttl=ttl
                )
            except LeaseNotHeld as lost:
                response = lease_pb2.RenewResponse(header=header(self.node), renewed=False)
                if lost.current is not None:
                    response.lease.CopyFrom(lease_message(self.node, lost.current))
                return response
        return lease_pb2.RenewResponse(
            header=header(self.node), renewed=True, lease=lease_message(self.node, lease)
        )

    def _renewed_here(self, name: str, holder: str, token: int) -> Lease | None:
        """The usual renewal, answered by LeaseNode.renew_locally without a coroutine, or None.

        Asked before any request check: a lease held under this name, holder and
        token had both checked when it was granted, so only the election
        namespace, closed to the LeaseService, needs a look first. None sends
        the call the full way (checks, then renew()).
        """
        if name.startswith(ELECTION_PREFIX):
            return None
        return self.node.renew_locally(name, holder, token)

    async def Release(
        self, request: lease_pb2.ReleaseRequest, context: Context
    ) -> lease_pb2.ReleaseResponse:
        check = Violations()
        check.lease_name("name", request.name)
        check.key("holder_id", request.holder_id)
        check.raise_if_any()
        with mapped_errors():
            try:
                await self.node.release(request.name, request.holder_id, request.token)
            except LeaseNotHeld:
                return lease_pb2.ReleaseResponse(header=header(self.node), released=False)
        return lease_pb2.ReleaseResponse(header=header(self.node), released=True)

    async def Get(self, request: lease_pb2.GetRequest, context: Context) -> lease_pb2.GetResponse:
        check = Violations()
        check.lease_name("name", request.name)
        check.raise_if_any()
        with mapped_errors():
            self.node.require_serving()
            lease = await self.node.get(request.name)
        response = lease_pb2.GetResponse(header=header(self.node), found=lease is not None)
        if lease is not None:
            response.lease.CopyFrom(lease_message(self.node, lease))
        return response

    async def List(
        self, request: lease_pb2.ListRequest, context: Context
    ) -> lease_pb2.ListResponse:
        check = Violations()
        check.key("prefix", request.prefix, required=False)
        check.raise_if_any()
        limit = request.limit or LIST_LIMIT
        with mapped_errors():
            self.node.require_serving()
            leases = await self.node.list(request.prefix)
        return lease_pb2.ListResponse(
            header=header(self.node),
            leases=[lease_message(self.node, lease) for lease in leases[:limit]],
            more=len(leases) > limit,
        )

    async def Watch(
        self, request: lease_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[lease_pb2.WatchResponse]:
        check = Violations()
        check.key("prefix", request.prefix, required=False)
        check.raise_if_any()
        with mapped_errors():
            # Started on the leader, so the snapshot is as fresh as any; the events
            # then come in log order from this node whatever its role later.
            self.node.require_serving()
            revision, existing = self.node.snapshot(request.prefix)
            if request.include_existing:
                yield lease_pb2.WatchResponse(
                    header=header(self.node),
                    events=[
                        lease_pb2.LeaseEvent(
                            type=lease_pb2.LEASE_EVENT_TYPE_EXISTING,
                            lease=lease_message(self.node, lease),
                            revision=revision,
                        )
                        for lease in existing
                    ],
                )
            async for event in self.stopping.iterate(self.node.watch(revision)):
                if event.lease.name.startswith(request.prefix):
                    yield lease_pb2.WatchResponse(
                        header=header(self.node), events=[event_message(self.node, event)]
                    )
