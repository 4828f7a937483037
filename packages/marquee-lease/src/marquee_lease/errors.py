"""Typed errors of the coordinator client.

Losing a lease race is an answer, not an error (see `AcquireResult`); these are
raised when a call could not get an answer, or the answer is a refusal the
caller has to act on.
"""

from __future__ import annotations

import grpc

from marquee_lease.models import LeaseInfo


class CoordinatorError(Exception):
    """Base class of every error this library raises."""


class LeaseUnavailable(CoordinatorError):
    """No coordinator member answered the call before its deadline.

    `code` is the last gRPC status seen (UNAVAILABLE, DEADLINE_EXCEEDED, or
    FAILED_PRECONDITION for a redirect that went nowhere), None if no attempt
    was made at all because the deadline had already passed.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class RequestRejected(CoordinatorError):
    """The coordinator refused the request (bad input, unknown member, ...)."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


class LeaseTaken(CoordinatorError):
    """`lease()` could not get the lease: someone else holds it."""

    def __init__(self, name: str, current: LeaseInfo | None) -> None:
        holder = f" (held by {current.holder_id}, token {current.token})" if current else ""
        super().__init__(f"lease {name!r} is taken{holder}")
        self.name = name
        self.current = current


class NotHeld(CoordinatorError):
    """A renew, resign or proclaim named a lease that is no longer held with that token."""

    def __init__(self, name: str, token: int) -> None:
        super().__init__(f"lease {name!r} is not held with token {token}")
        self.name = name
        self.token = token


class LeaseLost(CoordinatorError):
    """Raised by `HeldLease.check()` once the lease can no longer be trusted."""

    def __init__(self, name: str, token: int, reason: str) -> None:
        super().__init__(f"lease {name!r} (token {token}) lost: {reason}")
        self.name = name
        self.token = token
        self.reason = reason
