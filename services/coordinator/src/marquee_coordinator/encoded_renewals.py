"""The answers to a leader-local renewal, kept encoded per lease.

Almost every renewal is the usual one (LeaseNode.renew_locally): the same
lease, renewed to its full TTL. Its answer differs from the previous one only
in the response header, which changes with the node's view, and, for Renew,
in the lease's `expires_at`. Building the nested messages for every call cost
the leader's event loop ~30 us a renewal, about what the rest of a unary call
costs in this Python server over a no-op one (docs/benchmarks.md,
coordinator). So the encoded header is kept per view and the encoded lease
per lease; an answer is their concatenation, with `expires_at` encoded anew.

Every part is encoded by protobuf itself; only the framing of the nested
fields (a tag and a length, both varints) is written here. The parts come out
in field order, so an answer has the very bytes SerializeToString would give
(test_encoded_renewals).
"""

from __future__ import annotations

import time

from marquee.coordinator.v1 import lease_pb2
from marquee_coordinator.headers import duration, header, lease_fields, timestamp
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.state import Lease

# Field numbers of the messages assembled here (lease.proto).
_RESPONSE_HEADER = 1  # RenewResponse.header and KeepAliveResponse.header
_RENEW_LEASE = 3
_LEASE_EXPIRES_AT = 7

# At most this many leases' parts are kept; past it the table starts afresh. A
# lease's entry is replaced when the lease changes, so only leases that went away
# (released, expired) leave one behind.
MAX_KEPT = 32_768


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _length_delimited(field: int, payload: bytes) -> bytes:
    """One embedded-message field: its tag (wire type 2), its length, its bytes."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


_RENEWED = lease_pb2.RenewResponse(renewed=True).SerializeToString()


# One lease's parts: (token, revision, before_expiry, after_expiry, keepalive).
# before_expiry holds Lease fields 1-6 (name to acquired_at), after_expiry
# fields 8-9 (the revisions), keepalive KeepAliveResponse fields 2-6 (all but the
# header). The token and revision name the grant and revision of the name they
# encode: every change to a lease moves its revision. A plain tuple of numbers
# and bytes, not one holding the Lease, so the garbage collector drops it from
# its lists and full collections do not walk one per lease (expiry._Tracked).
_Parts = tuple[int, int, bytes, bytes, bytes]


def _parts(lease: Lease) -> _Parts:
    ttl = duration(lease.ttl)  # renewed just now: the time left is the whole TTL
    # Split around expires_at (field 7), which renew() encodes for each answer.
    before = lease_fields(lease, ttl, ttl, expires_at=None)
    after = lease_pb2.Lease(
        acquired_revision=before.acquired_revision, modified_revision=before.modified_revision
    )
    before.ClearField("acquired_revision")
    before.ClearField("modified_revision")
    keepalive = lease_pb2.KeepAliveResponse(
        name=lease.name, token=lease.token, alive=True, remaining=ttl, ttl=ttl
    )
    return (
        lease.token,
        lease.revision,
        before.SerializeToString(),
        after.SerializeToString(),
        keepalive.SerializeToString(),
    )


class RenewalAnswers:
    """Encoded RenewResponse and KeepAliveResponse for leases renewed by renew_locally."""

    def __init__(self, node: LeaseNode) -> None:
        self._node = node
        self._header: tuple[tuple[object, ...], bytes] | None = None
        self._leases: dict[str, _Parts] = {}

    def renew(self, lease: Lease, wall_now: float | None = None) -> bytes:
        """RenewResponse(header, renewed=True, lease) for `lease`, just renewed to its TTL."""
        _, _, before_expiry, after_expiry, _ = self._lease_parts(lease)
        now = time.time() if wall_now is None else wall_now
        expires_at = timestamp(now + lease.ttl).SerializeToString()
        body = before_expiry + _length_delimited(_LEASE_EXPIRES_AT, expires_at) + after_expiry
        return self._header_field() + _RENEWED + _length_delimited(_RENEW_LEASE, body)

    def keepalive(self, lease: Lease) -> bytes:
        """KeepAliveResponse(header, alive=True, ...) for `lease`, just renewed to its TTL."""
        return self._header_field() + self._lease_parts(lease)[4]

    def _header_field(self) -> bytes:
        token = self._node.view_token()
        kept = self._header
        if kept is None or kept[0] != token:
            encoded = header(self._node).SerializeToString()
            kept = self._header = (token, _length_delimited(_RESPONSE_HEADER, encoded))
        return kept[1]

    def _lease_parts(self, lease: Lease) -> _Parts:
        parts = self._leases.get(lease.name)
        if parts is None or parts[1] != lease.revision or parts[0] != lease.token:
            if len(self._leases) >= MAX_KEPT:
                self._leases.clear()
            parts = self._leases[lease.name] = _parts(lease)
        return parts
