"""Membership rules and the member view: which changes keep a live quorum, who is who.

The voter set is pysyncobj's own (its membership entries live in the Raft log
and its full dump, so they survive restarts); the replicated `LeaseState.members`
adds what Raft does not know: each member's id and gRPC address.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from marquee_coordinator.errors import MembershipRefused


class Role(StrEnum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as one node sees it."""

    id: str  # empty until the member has registered (or was added through MemberAdd)
    raft_address: str
    grpc_address: str
    role: Role
    connected: bool  # a live Raft connection to it (always true for the answering node)
    last_contact: float | None  # seconds since the leader last heard from it; None if unknown


def quorum(voters: int) -> int:
    return voters // 2 + 1


def check_add(voters: int, live: int) -> None:
    """Refuse an add that the live members could not commit once the new voter counts.

    The new node is normally started after the change (it needs the member list),
    so it is not counted as live. A single node may always grow: it has no
    availability to lose that it could keep, and it is the only way to 1 -> 3.
    """
    if voters > 1 and live < quorum(voters + 1):
        raise MembershipRefused(
            f"adding a member needs {quorum(voters + 1)} live members of {voters + 1}; "
            f"only {live} are live"
        )


def check_remove(voters: int, live_after: int) -> None:
    """Refuse a removal after which the remaining live voters are not a quorum."""
    if voters <= 1:
        raise MembershipRefused("cannot remove the last member")
    if live_after < quorum(voters - 1):
        raise MembershipRefused(
            f"removing it would leave {live_after} live of {voters - 1} members, "
            f"fewer than the quorum of {quorum(voters - 1)}"
        )
