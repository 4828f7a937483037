"""Servicers for contracts whose implementation has not landed yet.

This is the only placeholder the suite allows: every RPC of such a service
answers UNIMPLEMENTED with a message naming the method and what is missing,
so a caller (or an engineer with grpcurl) learns more than gRPC's generic
"Method not implemented!".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from marquee_platform.errors import Unimplemented

T = TypeVar("T")


# `base` is typed as a callable rather than type[T] because mypy refuses abstract
# classes for type[T], and generated servicer bases are abstract.
def pending_servicer(base: Callable[[], T], service: ServiceDescriptor, missing: str) -> T:
    """An instance of the servicer class `base` whose every RPC of `service` is UNIMPLEMENTED."""
    if not isinstance(base, type):
        raise TypeError(f"expected a servicer class, got {base!r}")
    methods = {m.name: _pending_method(service, m, missing) for m in service.methods}
    servicer: T = type(f"Pending{base.__name__}", (base,), methods)()
    return servicer


def add_pending(
    server: grpc.aio.Server,
    add_to_server: Callable[[T, grpc.aio.Server], None],
    base: Callable[[], T],
    service: ServiceDescriptor,
    missing: str,
) -> str:
    """Register a pending servicer for `service`; returns its full name for health."""
    add_to_server(pending_servicer(base, service, missing), server)
    return service.full_name


def _pending_method(
    service: ServiceDescriptor, method: MethodDescriptor, missing: str
) -> Callable[..., Awaitable[None]]:
    message = f"{service.full_name}/{method.name} is not implemented yet: {missing}"

    # A plain coroutine suits every method shape: grpc.aio runs a coroutine
    # response-streaming handler through its reader/writer API.
    async def pending(self: object, request: object, context: object) -> None:
        raise Unimplemented(message)

    return pending
