"""The node's typed errors as the gRPC statuses of the coordinator contract (header.proto).

Lost leases are not errors: servicers turn LeaseHeld / LeaseNotHeld into
`acquired=false` and friends before anything reaches this mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from marquee_coordinator.errors import (
    CoordinatorError,
    EventsCompacted,
    InvalidLeaseRequest,
    LeaseHeld,
    LeaseNotHeld,
    MemberExists,
    MembershipChangeInProgress,
    MembershipRefused,
    NotLeader,
    OutcomeUnknown,
    RequestIdReused,
    TransferFailed,
    Unavailable,
    UnknownMember,
)
from marquee_platform import errors

LEADER_METADATA = "x-marquee-leader"


def to_service_error(exc: CoordinatorError) -> errors.ServiceError:
    match exc:
        case NotLeader(leader_client_address=str(address)) if address:
            return errors.FailedPrecondition(str(exc), metadata=[(LEADER_METADATA, address)])
        case NotLeader():
            # No leader we could name: the contract says UNAVAILABLE, retry shortly.
            return errors.Unavailable("no leader is known right now (election in progress?)")
        case OutcomeUnknown():
            return errors.Unavailable(
                f"{exc}: the request may or may not have been applied; "
                "retry with the same request_id to learn its outcome"
            )
        case Unavailable() | TransferFailed():
            return errors.Unavailable(str(exc))
        case InvalidLeaseRequest():
            return errors.InvalidArgument(str(exc))
        case RequestIdReused():
            return errors.InvalidArgument(str(exc), [("request_id", str(exc))])
        case EventsCompacted():
            return errors.ServiceError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"{exc}: read the current state (List, or Watch with include_existing) "
                "and watch again from there",
            )
        case LeaseHeld() | MemberExists():
            return errors.AlreadyExists(str(exc))
        case LeaseNotHeld() | MembershipRefused():
            return errors.FailedPrecondition(str(exc))
        case MembershipChangeInProgress():
            return errors.ServiceError(grpc.StatusCode.ABORTED, f"{exc}; retry when it is done")
        case UnknownMember():
            return errors.NotFound(str(exc))
    return errors.ServiceError(grpc.StatusCode.INTERNAL, str(exc))


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Raise the node's errors inside the block as the statuses clients act on."""
    try:
        yield
    except CoordinatorError as exc:
        raise to_service_error(exc) from exc
