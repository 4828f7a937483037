"""Protobuf messages built from the node's state: the response header, leases, events."""

from __future__ import annotations

import time

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.coordinator.v1 import header_pb2, lease_pb2
from marquee_coordinator.raft_node import LeaseNode, View
from marquee_coordinator.state import EventKind, Lease, LeaseEvent

EVENT_TYPES = {
    EventKind.ACQUIRED: lease_pb2.LEASE_EVENT_TYPE_ACQUIRED,
    EventKind.RENEWED: lease_pb2.LEASE_EVENT_TYPE_RENEWED,
    EventKind.RELEASED: lease_pb2.LEASE_EVENT_TYPE_RELEASED,
    EventKind.EXPIRED: lease_pb2.LEASE_EVENT_TYPE_EXPIRED,
}


# The last header built, with the view it was built from: a KeepAlive stream asks
# for one per renewal, and the view changes only with a write or an election.
_last_header: tuple[View, header_pb2.ResponseHeader] | None = None


def header(node: LeaseNode) -> header_pb2.ResponseHeader:
    """The response header for `node`'s view now. Callers copy it, never change it."""
    global _last_header
    view = node.view()
    last = _last_header
    if last is not None and last[0] == view:
        return last[1]
    message = header_pb2.ResponseHeader(
        cluster_id=view.cluster_id,
        member_id=view.member_id,
        raft_term=view.term,
        revision=view.revision,
        leader_id=view.leader_id,
        leader_address=view.leader_address,
    )
    _last_header = (view, message)
    return message


def duration(seconds: float) -> Duration:
    nanos = round(seconds * 1e9)
    if nanos < 0:
        message = Duration()
        message.FromNanoseconds(nanos)  # both fields negative, as Duration wants
        return message
    # The constructor, not FromNanoseconds (Python code): once per renewal.
    whole, rest = divmod(nanos, 1_000_000_000)
    return Duration(seconds=whole, nanos=rest)


def _durations(
    node: LeaseNode, lease: Lease, *, held: bool = True
) -> tuple[Duration, Duration, float]:
    """The lease's TTL and time left as Durations, and the time left in seconds.

    The time left is the serving leader's own measure; a lease it does not
    track (not held any more, or asked of a non-leader) counts as a full TTL
    if held. (A renewal answered by LeaseNode.renew_locally is encoded apart:
    encoded_renewals.py.)
    """
    tracked = node.remaining(lease.name) if held else 0.0
    remaining = lease.ttl if tracked is None else tracked
    return duration(lease.ttl), duration(remaining), remaining


def keepalive_response(
    node: LeaseNode,
    request: lease_pb2.KeepAliveRequest,
    lease: Lease | None,
) -> lease_pb2.KeepAliveResponse:
    """The answer to one KeepAlive item: `lease` renewed, or None if it was lost.

    Built in one constructor call (a stream answers thousands a second).
    """
    if lease is None:
        return lease_pb2.KeepAliveResponse(
            name=request.name, token=request.token, alive=False, header=header(node)
        )
    ttl, left, _ = _durations(node, lease)
    return lease_pb2.KeepAliveResponse(
        name=request.name,
        token=request.token,
        alive=True,
        remaining=left,
        ttl=ttl,
        header=header(node),
    )


def seconds(message: Duration) -> float:
    return message.ToNanoseconds() / 1e9


def timestamp(wall_seconds: float) -> Timestamp:
    # divmod floors, so nanos is in [0, 1e9) before 1970 too, as Timestamp wants.
    whole, nanos = divmod(round(wall_seconds * 1e9), 1_000_000_000)
    return Timestamp(seconds=whole, nanos=nanos)


def lease_message(node: LeaseNode, lease: Lease, *, held: bool = True) -> lease_pb2.Lease:
    """The lease as clients see it; `held` as _durations() takes it."""
    ttl, left, remaining = _durations(node, lease, held=held)
    return lease_fields(lease, ttl, left, expires_at=timestamp(time.time() + remaining))


def lease_fields(
    lease: Lease, ttl: Duration, remaining: Duration, *, expires_at: Timestamp | None
) -> lease_pb2.Lease:
    """The Lease message of `lease` with the times given."""
    return lease_pb2.Lease(
        name=lease.name,
        holder_id=lease.holder,
        token=lease.token,
        ttl=ttl,
        remaining=remaining,
        acquired_at=timestamp(lease.acquired_at) if lease.acquired_at else None,
        expires_at=expires_at,
        acquired_revision=lease.acquired_revision,
        modified_revision=lease.revision,
    )


def event_message(node: LeaseNode, event: LeaseEvent) -> lease_pb2.LeaseEvent:
    held = event.kind in (EventKind.ACQUIRED, EventKind.RENEWED)
    return lease_pb2.LeaseEvent(
        type=EVENT_TYPES[event.kind],
        lease=lease_message(node, event.lease, held=held),
        revision=event.revision,
    )
