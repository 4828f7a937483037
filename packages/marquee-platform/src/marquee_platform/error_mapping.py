"""Turns exceptions escaping a handler into gRPC statuses clients can act on."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import grpc.aio
import pydantic
import structlog
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from marquee_platform.errors import ServiceError, invalid_argument_from

log = structlog.stdlib.get_logger(__name__)


def service_error_for(method: str, exc: Exception) -> ServiceError:
    """ServiceError -> itself; pydantic.ValidationError -> INVALID_ARGUMENT; else INTERNAL.

    An unexpected exception is logged once with its traceback under an error
    id that the client's message carries, so the two can be matched up; the
    traceback itself never reaches the client.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, pydantic.ValidationError):
        return invalid_argument_from(exc)
    error_id = str(uuid.uuid4())
    log.exception("unhandled error in handler", method=method, error_id=error_id, exc_info=exc)
    return ServiceError(grpc.StatusCode.INTERNAL, f"internal error (id {error_id})")


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: ServiceError) -> None:
    """End the call with `error`, its details packed as a google.rpc.Status."""
    details = []
    for detail in error.details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    status = rpc_status.to_status(
        status_pb2.Status(code=error.code.value[0], message=error.message, details=details)
    )
    await context.abort(status.code, status.details, (*error.metadata, *status.trailing_metadata))
