"""Errors the Raft node raises; the gRPC servicer maps them to status codes.

Kept free of gRPC so the core can be driven from tests and tools directly.
Suggested mapping: NotLeader -> FAILED_PRECONDITION with the leader's address
in metadata (K-4); Unavailable and OutcomeUnknown -> UNAVAILABLE; LeaseHeld ->
ALREADY_EXISTS; LeaseNotHeld -> FAILED_PRECONDITION; InvalidLeaseRequest and
RequestIdReused -> INVALID_ARGUMENT; EventsCompacted -> OUT_OF_RANGE.
"""

from __future__ import annotations

from marquee_coordinator.state import Lease


class CoordinatorError(Exception):
    """Base of every error the node raises on purpose."""


class NotLeader(CoordinatorError):
    """A leader-only call reached a node that is not the serving leader."""

    def __init__(self, leader_raft_address: str | None, leader_client_address: str | None) -> None:
        where = leader_client_address or leader_raft_address or "unknown"
        super().__init__(f"not the leader; the leader is {where}")
        # Raft address as pysyncobj knows it; client (gRPC) address once the
        # leader's epoch has been committed and applied here, else None.
        self.leader_raft_address = leader_raft_address
        self.leader_client_address = leader_client_address


class Unavailable(CoordinatorError):
    """Nothing was committed (no quorum, leader changed, queue full): safe to retry."""


class OutcomeUnknown(Unavailable):
    """The command was proposed but its fate is unknown: retry with the same request id."""


class InsecureConfiguration(CoordinatorError):
    """No cluster secret outside the dev profile (K-9)."""


class InvalidLeaseRequest(CoordinatorError):
    pass


class RequestIdReused(CoordinatorError):
    pass


class LeaseHeld(CoordinatorError):
    def __init__(self, current: Lease) -> None:
        super().__init__(f"lease {current.name!r} is held by {current.holder!r}")
        self.current = current


class LeaseNotHeld(CoordinatorError):
    """Renew or release of a lease the caller does not hold (expired, released, other token)."""

    def __init__(self, name: str, current: Lease | None) -> None:
        super().__init__(f"lease {name!r} is not held with that holder and token")
        self.name = name
        self.current = current


class GrantEnded(LeaseNotHeld):
    """An acquire retried with the request id of a grant that has since ended: not held."""


class EventsCompacted(CoordinatorError):
    """A watch asked for events older than the retained history; re-read with list()."""

    def __init__(self, since: int) -> None:
        super().__init__(f"events after revision {since} are no longer retained")
        self.since = since


class MembershipRefused(CoordinatorError):
    """A membership change that would leave the cluster without a live quorum, or is invalid."""


class MembershipChangeInProgress(CoordinatorError):
    """Another membership change has not been committed yet: one change at a time."""


class MemberExists(CoordinatorError):
    pass


class UnknownMember(CoordinatorError):
    pass


class TransferFailed(CoordinatorError):
    """Leadership could not be handed over (no caught-up target, or no new leader in time)."""
