"""Errors a handler raises to answer with a specific gRPC status.

Raise one of these from a servicer method; the error-mapping interceptor turns
it into the status, message, google.rpc details and trailing metadata the
client sees. A `pydantic.ValidationError` escaping a handler is answered as
INVALID_ARGUMENT with a google.rpc.BadRequest; anything else as INTERNAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NoReturn

import grpc
import pydantic
from google.protobuf.message import Message
from google.rpc import error_details_pb2

Metadata = Sequence[tuple[str, str | bytes]]


class ServiceError(Exception):
    """A handled failure: the client gets `code` and `message`, never a traceback."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        details: Sequence[Message] = (),
        metadata: Metadata = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)
        self.metadata = tuple(metadata)


class _FixedCodeError(ServiceError):
    status_code: ClassVar[grpc.StatusCode]

    def __init__(self, message: str, *, metadata: Metadata = ()) -> None:
        super().__init__(self.status_code, message, metadata=metadata)


class InvalidArgument(ServiceError):
    """Bad input; each (field, description) pair becomes a BadRequest field violation."""

    def __init__(
        self,
        message: str,
        field_violations: Sequence[tuple[str, str]] = (),
        *,
        metadata: Metadata = (),
    ) -> None:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in field_violations
            ]
        )
        details = (bad_request,) if field_violations else ()
        super().__init__(
            grpc.StatusCode.INVALID_ARGUMENT, message, details=details, metadata=metadata
        )
        self.field_violations = tuple(field_violations)


class NotFound(_FixedCodeError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(_FixedCodeError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(_FixedCodeError):
    """E.g. a follower asked for a leader-only call: put the leader address in `metadata`."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(_FixedCodeError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(_FixedCodeError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(_FixedCodeError):
    status_code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(_FixedCodeError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(_FixedCodeError):
    status_code = grpc.StatusCode.UNIMPLEMENTED


def unimplemented(what: str, *, issue: str | None = None) -> NoReturn:
    """Raise UNIMPLEMENTED naming what is missing and, if known, the issue that tracks it.

    unimplemented("CacheService.Get", issue="cache") answers
    "CacheService.Get is not implemented yet (issue: cache)".
    """
    tracked_by = f" (issue: {issue})" if issue else ""
    raise Unimplemented(f"{what} is not implemented yet{tracked_by}")


def field_violations_from(exc: pydantic.ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for every error pydantic found, e.g. ("items.0.name", "...")."""
    return [(".".join(str(part) for part in error["loc"]), error["msg"]) for error in exc.errors()]


def invalid_argument_from(exc: pydantic.ValidationError) -> InvalidArgument:
    violations = field_violations_from(exc)
    summary = "; ".join(
        f"{field}: {message}" if field else message for field, message in violations
    )
    return InvalidArgument(f"invalid argument: {summary}", violations)
