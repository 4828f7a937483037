"""Turns exceptions escaping a handler into gRPC statuses clients can act on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import pydantic
import structlog
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from marquee_platform.errors import ServiceError, invalid_argument_from
from marquee_platform.interceptors import AroundRpcInterceptor, Context

log = structlog.stdlib.get_logger(__name__)


class ErrorMappingInterceptor(AroundRpcInterceptor):
    """ServiceError -> its status; pydantic.ValidationError -> INVALID_ARGUMENT; else INTERNAL.

    `context.abort` (grpc.aio.AbortError) passes through untouched. An
    unexpected exception is logged once with its traceback under an error id
    that the client's message carries, so the two can be matched up.
    """

    @asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except ServiceError as exc:
            await abort_with(context, exc)
        except pydantic.ValidationError as exc:
            await abort_with(context, invalid_argument_from(exc))
        except Exception:
            error_id = str(uuid.uuid4())
            log.exception("unhandled error in handler", method=method, error_id=error_id)
            await abort_with(
                context,
                ServiceError(grpc.StatusCode.INTERNAL, f"internal error (id {error_id})"),
            )


async def abort_with(context: Context, error: ServiceError) -> None:
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
