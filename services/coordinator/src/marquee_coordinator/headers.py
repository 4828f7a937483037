"""Protobuf messages built from the node's state: the response header, leases, events."""

from __future__ import annotations

import time

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.coordinator.v1 import header_pb2, lease_pb2
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.state import EventKind, Lease, LeaseEvent

EVENT_TYPES = {
    EventKind.ACQUIRED: lease_pb2.LEASE_EVENT_TYPE_ACQUIRED,
    EventKind.RENEWED: lease_pb2.LEASE_EVENT_TYPE_RENEWED,
    EventKind.RELEASED: lease_pb2.LEASE_EVENT_TYPE_RELEASED,
    EventKind.EXPIRED: lease_pb2.LEASE_EVENT_TYPE_EXPIRED,
}


def header(node: LeaseNode) -> header_pb2.ResponseHeader:
    view = node.view()
    return header_pb2.ResponseHeader(
        cluster_id=view.cluster_id,
        member_id=view.member_id,
        raft_term=view.term,
        revision=view.revision,
        leader_id=view.leader_id,
        leader_address=view.leader_address,
    )


def duration(seconds: float) -> Duration:
    message = Duration()
    message.FromNanoseconds(round(seconds * 1e9))
    return message


def seconds(message: Duration) -> float:
    return message.ToNanoseconds() / 1e9


def timestamp(wall_seconds: float) -> Timestamp:
    message = Timestamp()
    message.FromNanoseconds(round(wall_seconds * 1e9))
    return message


def lease_message(node: LeaseNode, lease: Lease, *, held: bool = True) -> lease_pb2.Lease:
    """`remaining` is the serving leader's own measure; a lease it does not track
    (not held any more, or asked of a non-leader) counts as a full TTL if held."""
    remaining = node.remaining(lease.name) if held else 0.0
    if remaining is None:
        remaining = lease.ttl
    message = lease_pb2.Lease(
        name=lease.name,
        holder_id=lease.holder,
        token=lease.token,
        ttl=duration(lease.ttl),
        remaining=duration(remaining),
        expires_at=timestamp(time.time() + remaining),
        acquired_revision=lease.acquired_revision,
        modified_revision=lease.revision,
    )
    if lease.acquired_at:
        message.acquired_at.CopyFrom(timestamp(lease.acquired_at))
    return message


def event_message(node: LeaseNode, event: LeaseEvent) -> lease_pb2.LeaseEvent:
    held = event.kind in (EventKind.ACQUIRED, EventKind.RENEWED)
    return lease_pb2.LeaseEvent(
        type=EVENT_TYPES[event.kind],
        lease=lease_message(node, event.lease, held=held),
        revision=event.revision,
    )
