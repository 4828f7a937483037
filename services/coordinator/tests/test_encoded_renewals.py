"""The encoded answers to a leader-local renewal are the messages the servicer would build."""

from __future__ import annotations

from typing import cast

import pytest

from marquee.coordinator.v1 import header_pb2, lease_pb2
from marquee_coordinator import encoded_renewals
from marquee_coordinator.encoded_renewals import RenewalAnswers
from marquee_coordinator.headers import duration, timestamp
from marquee_coordinator.raft_node import LeaseNode, View
from marquee_coordinator.state import Lease

NOW = 1_796_454_013.832933


class FakeNode:
    """What RenewalAnswers asks of a node: its view, and a token that changes with it."""

    def __init__(self) -> None:
        self.current = View("cluster-1", "m1", 3, 41, "m1", "127.0.0.1:7001")

    def view(self) -> View:
        return self.current

    def view_token(self) -> tuple[object, ...]:
        return tuple(self.current)


def answers_for(node: FakeNode) -> RenewalAnswers:
    return RenewalAnswers(cast(LeaseNode, node))


def expected_header(view: View) -> header_pb2.ResponseHeader:
    return header_pb2.ResponseHeader(
        cluster_id=view.cluster_id,
        member_id=view.member_id,
        raft_term=view.term,
        revision=view.revision,
        leader_id=view.leader_id,
        leader_address=view.leader_address,
    )


def expected_lease(lease: Lease, now: float) -> lease_pb2.Lease:
    # Renewed just now: the whole TTL is left.
    return lease_pb2.Lease(
        name=lease.name,
        holder_id=lease.holder,
        token=lease.token,
        ttl=duration(lease.ttl),
        remaining=duration(lease.ttl),
        acquired_at=timestamp(lease.acquired_at) if lease.acquired_at else None,
        expires_at=timestamp(now + lease.ttl),
        acquired_revision=lease.acquired_revision,
        modified_revision=lease.revision,
    )


LEASES = [
    Lease("job", "a", 1, 10.0, 5, acquired_revision=5, acquired_at=NOW - 3),
    # No grant time known, a fractional TTL, revisions and a token past one varint byte.
    Lease("jobs/cleanup", "worker-7", 2**40 + 3, 0.25, 300_000, acquired_revision=200),
    # Names and holders in other scripts; a long name (a two-byte length).
    Lease("tâche/ünïcode/名前", "hôte-1", 129, 3600.125, 1, acquired_at=1.5),
    Lease("n" * 300, "h" * 200, 7, 1.0, 9, acquired_revision=9, acquired_at=NOW),
]


@pytest.mark.parametrize("lease", LEASES, ids=lambda lease: lease.name[:12])
def test_a_renew_answer_is_the_canonical_encoding_of_the_message(lease: Lease) -> None:
    node = FakeNode()
    expected = lease_pb2.RenewResponse(
        header=expected_header(node.current), renewed=True, lease=expected_lease(lease, NOW)
    )
    encoded = answers_for(node).renew(lease, wall_now=NOW)
    assert lease_pb2.RenewResponse.FromString(encoded) == expected
    assert encoded == expected.SerializeToString()


@pytest.mark.parametrize("lease", LEASES, ids=lambda lease: lease.name[:12])
def test_a_keepalive_answer_is_the_canonical_encoding_of_the_message(lease: Lease) -> None:
    node = FakeNode()
    expected = lease_pb2.KeepAliveResponse(
        header=expected_header(node.current),
        name=lease.name,
        token=lease.token,
        alive=True,
        remaining=duration(lease.ttl),
        ttl=duration(lease.ttl),
    )
    encoded = answers_for(node).keepalive(lease)
    assert lease_pb2.KeepAliveResponse.FromString(encoded) == expected
    assert encoded == expected.SerializeToString()


def test_the_answer_follows_the_view_the_lease_and_the_clock() -> None:
    node = FakeNode()
    answers = answers_for(node)
    lease = LEASES[0]
    first = lease_pb2.RenewResponse.FromString(answers.renew(lease, wall_now=NOW))

    later = lease_pb2.RenewResponse.FromString(answers.renew(lease, wall_now=NOW + 2.5))
    assert later.lease.expires_at == timestamp(NOW + 2.5 + lease.ttl)

    node.current = node.current._replace(term=4, revision=42, leader_id="", leader_address="")
    moved = lease_pb2.RenewResponse.FromString(answers.renew(lease, wall_now=NOW))
    assert moved.header == expected_header(node.current)
    assert moved.lease == first.lease
    keepalive = lease_pb2.KeepAliveResponse.FromString(answers.keepalive(lease))
    assert keepalive.header == moved.header

    # A new grant of the name (another holder, token and TTL) is a new Lease object.
    regranted = Lease(lease.name, "b", lease.token + 1, 30.0, 50, acquired_revision=50)
    again = lease_pb2.RenewResponse.FromString(answers.renew(regranted, wall_now=NOW))
    assert again.lease == expected_lease(regranted, NOW)
    keepalive = lease_pb2.KeepAliveResponse.FromString(answers.keepalive(regranted))
    assert (keepalive.token, keepalive.ttl) == (regranted.token, duration(30.0))


def test_the_kept_parts_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoded_renewals, "MAX_KEPT", 8)
    node = FakeNode()
    answers = answers_for(node)
    for n in range(50):
        lease = Lease(f"lease-{n}", "a", n + 1, 5.0, n + 1)
        decoded = lease_pb2.RenewResponse.FromString(answers.renew(lease, wall_now=NOW))
        assert decoded.lease == expected_lease(lease, NOW)
        assert len(answers._leases) <= 8
