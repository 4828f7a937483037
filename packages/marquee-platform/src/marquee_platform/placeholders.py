"""Servicers for contracts whose implementation has not landed yet.

This is the only placeholder the suite allows: every RPC of such a service
answers UNIMPLEMENTED with a message naming the method and what is missing,
so a caller (or an engineer with grpcurl) learns more than gRPC's generic
"Method not implemented!".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from marquee_platform.errors import unimplemented

T = TypeVar("T")


def pending_servicer(base: type[T], service: ServiceDescriptor, missing: str) -> T:
    """An instance of `base` whose every RPC of `service` answers UNIMPLEMENTED."""
    methods = {m.name: _pending_method(service, m, missing) for m in service.methods}
    return type(f"Pending{base.__name__}", (base,), methods)()


def _pending_method(
    service: ServiceDescriptor, method: MethodDescriptor, missing: str
) -> Callable[..., Any]:
    what = f"{service.full_name}/{method.name} is not implemented yet: {missing}"

    # Response-streaming handlers must be async generators for grpc.aio to
    # treat them as streams, so the placeholder keeps the method's shape.
    if method.server_streaming:

        async def stream(self: object, request: object, context: object) -> AsyncIterator[Any]:
            unimplemented(what)
            yield  # pragma: no cover - makes this an async generator

        return stream

    async def unary(self: object, request: object, context: object) -> Any:
        unimplemented(what)

    return unary
