"""Plain results of coordinator calls, converted from the protobuf messages.

Times named `*_at` that come from the server are its wall clock and only
informational; durations are relative and safe to use on the local clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.coordinator.v1 import cluster_pb2, election_pb2, header_pb2, lease_pb2


def seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def duration(value: float) -> Duration:
    message = Duration()
    message.FromNanoseconds(round(value * 1e9))
    return message


def _timestamp(message: Timestamp) -> datetime | None:
    # An unset timestamp is the epoch; report it as unknown rather than 1970.
    if message.seconds == 0 and message.nanos == 0:
        return None
    return message.ToDatetime(tzinfo=None).astimezone()


@dataclass(frozen=True)
class Header:
    cluster_id: str
    member_id: str
    raft_term: int
    revision: int
    leader_id: str
    leader_address: str

    @classmethod
    def from_proto(cls, message: header_pb2.ResponseHeader) -> Header:
        return cls(
            cluster_id=message.cluster_id,
            member_id=message.member_id,
            raft_term=message.raft_term,
            revision=message.revision,
            leader_id=message.leader_id,
            leader_address=message.leader_address,
        )


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder_id: str
    token: int
    ttl: float
    # Time left as measured by the leader when it answered.
    remaining: float
    acquired_revision: int
    modified_revision: int
    acquired_at: datetime | None = None
    expires_at: datetime | None = None

    @classmethod
    def from_proto(cls, message: lease_pb2.Lease) -> LeaseInfo:
        return cls(
            name=message.name,
            holder_id=message.holder_id,
            token=message.token,
            ttl=seconds(message.ttl),
            remaining=seconds(message.remaining),
            acquired_revision=message.acquired_revision,
            modified_revision=message.modified_revision,
            acquired_at=_timestamp(message.acquired_at),
            expires_at=_timestamp(message.expires_at),
        )


@dataclass(frozen=True)
class AcquireResult:
    """acquired=True: `lease` is the caller's. Otherwise the current holder's, if known."""

    acquired: bool
    lease: LeaseInfo | None
    header: Header
    # Local monotonic time the answered attempt was sent: the base of any local deadline.
    sent_at: float


@dataclass(frozen=True)
class RenewResult:
    """renewed=False: `lease` is the current holder's (None if nobody holds it)."""

    renewed: bool
    lease: LeaseInfo | None
    header: Header
    sent_at: float


@dataclass(frozen=True)
class LeaseList:
    leases: list[LeaseInfo]
    # More leases matched than the limit let through.
    more: bool
    header: Header


ROLES = {
    cluster_pb2.MEMBER_ROLE_LEADER: "leader",
    cluster_pb2.MEMBER_ROLE_FOLLOWER: "follower",
    cluster_pb2.MEMBER_ROLE_CANDIDATE: "candidate",
    cluster_pb2.MEMBER_ROLE_LEARNER: "learner",
}


@dataclass(frozen=True)
class Member:
    id: str
    raft_address: str
    grpc_address: str
    # leader, follower, candidate, learner or unknown (as the answering member sees it).
    role: str
    healthy: bool
    connected: bool
    # Seconds since the answering member last heard from it; None if unknown.
    last_contact: float | None

    @classmethod
    def from_proto(cls, message: cluster_pb2.Member) -> Member:
        return cls(
            id=message.id,
            raft_address=message.raft_address,
            grpc_address=message.grpc_address,
            role=ROLES.get(message.role, "unknown"),
            healthy=message.healthy,
            connected=message.connected,
            last_contact=seconds(message.last_contact)
            if message.HasField("last_contact")
            else None,
        )


@dataclass(frozen=True)
class ClusterStatus:
    header: Header
    # The member that answered.
    member: Member
    members: list[Member]
    commit_index: int
    applied_index: int
    has_quorum: bool
    storage_size_bytes: int
    lease_count: int
    version: str
    errors: list[str]

    @classmethod
    def from_proto(cls, message: cluster_pb2.StatusResponse) -> ClusterStatus:
        return cls(
            header=Header.from_proto(message.header),
            member=Member.from_proto(message.member),
            members=[Member.from_proto(m) for m in message.members],
            commit_index=message.raft_commit_index,
            applied_index=message.raft_applied_index,
            has_quorum=message.has_quorum,
            storage_size_bytes=message.storage_size_bytes,
            lease_count=message.lease_count,
            version=message.version,
            errors=list(message.errors),
        )


@dataclass(frozen=True)
class Membership:
    """The members after a change; `added` is the new member of a join."""

    members: list[Member]
    header: Header
    added: Member | None = None


@dataclass(frozen=True)
class Transfer:
    previous_leader_id: str
    # The new leader, from the response header.
    leader_id: str
    leader_address: str


@dataclass(frozen=True)
class LeaderKey:
    """One term of leadership; `token` is its fencing token."""

    election: str
    candidate_id: str
    token: int
    lease_name: str

    @classmethod
    def from_proto(cls, message: election_pb2.LeaderKey) -> LeaderKey:
        return cls(message.election, message.candidate_id, message.token, message.lease_name)

    def to_proto(self) -> election_pb2.LeaderKey:
        return election_pb2.LeaderKey(
            election=self.election,
            candidate_id=self.candidate_id,
            token=self.token,
            lease_name=self.lease_name,
        )


@dataclass(frozen=True)
class ElectionLeader:
    key: LeaderKey
    value: bytes
    elected_revision: int
    elected_at: datetime | None = None

    @classmethod
    def from_proto(cls, message: election_pb2.ElectionLeader) -> ElectionLeader:
        return cls(
            key=LeaderKey.from_proto(message.key),
            value=message.value,
            elected_revision=message.elected_revision,
            elected_at=_timestamp(message.elected_at),
        )
