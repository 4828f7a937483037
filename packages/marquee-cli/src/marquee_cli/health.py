"""Ask a process how it is through the standard gRPC health API (grpc.health.v1).

A process reports its health per service name: "" for the process as a whole,
and one entry for each service it serves (the cache gateway's CacheService is
NOT_SERVING while Redis is down, though the process is fine). Which services a
process serves comes from its server reflection, as `grpcurl list` does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # grpc loads when a probe runs, not when status/down merely import this
    import grpc

# Reported when the probe itself fails: no answer, refused connection, timeout...
UNREACHABLE = "UNREACHABLE"
SERVING = "SERVING"
SERVICE_UNKNOWN = "SERVICE_UNKNOWN"
REFLECTION_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# Health and reflection themselves: every process has them, they say nothing of its health.
INFRASTRUCTURE_PREFIX = "grpc."


@dataclass(frozen=True)
class ProcessHealth:
    """`server`: the "" entry; `services`: each served service's own status, by name."""

    server: str
    services: dict[str, str] = field(default_factory=dict)


async def check_health(address: str, service: str = "", deadline: float = 2.0) -> str:
    """The serving status of `service` at `address` (host:port), e.g. "SERVING".

    `deadline` is in seconds. The empty service name asks about the process as
    a whole. Never raises for an unhealthy or unreachable server: gives
    UNREACHABLE, or SERVICE_UNKNOWN (NOT_FOUND) for a service it does not know.
    """
    import grpc

    async with grpc.aio.insecure_channel(address) as channel:
        return await _check(channel, service, deadline)


async def process_health(address: str, deadline: float = 2.0) -> ProcessHealth:
    """The "" status and that of every service the process at `address` serves.

    A process without reflection gets its "" status alone. Never raises.
    """
    import grpc

    async with grpc.aio.insecure_channel(address) as channel:
        server = await _check(channel, "", deadline)
        if server == UNREACHABLE:
            return ProcessHealth(server)
        names = await list_services(channel, deadline)
        statuses = await asyncio.gather(*(_check(channel, name, deadline) for name in names))
    return ProcessHealth(server, dict(zip(names, statuses, strict=True)))


async def _check(channel: grpc.aio.Channel, service: str, deadline: float) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=deadline)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return SERVICE_UNKNOWN
        return UNREACHABLE
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def list_services(channel: grpc.aio.Channel, deadline: float) -> list[str]:
    """The application services the server lists through reflection; [] if it cannot."""
    import grpc

    request_class, response_class = _reflection_messages()
    info: grpc.aio.StreamStreamMultiCallable[Any, Any] = channel.stream_stream(
        REFLECTION_METHOD,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    call = info(iter([request_class(list_services="")]), timeout=deadline)
    try:
        async for reply in call:
            names = [s.name for s in reply.list_services_response.service]
            return sorted(n for n in names if not n.startswith(INFRASTRUCTURE_PREFIX))
    except grpc.aio.AioRpcError:
        pass
    finally:
        call.cancel()
    return []


@cache
def _reflection_messages() -> tuple[Any, Any]:
    """The two messages of grpc.reflection.v1alpha that list services, and nothing more.

    Built here rather than imported from grpcio-reflection, which is a server-side
    package the CLI does not depend on. A private pool keeps them from clashing with
    the real ones if this process also serves reflection (tests do). Fields not
    declared here are skipped when parsing, as protobuf does with unknown fields.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field_proto = descriptor_pb2.FieldDescriptorProto
    package = "grpc.reflection.v1alpha"
    # proto2: there list_services="" is sent (field presence); in the real proto3 file
    # it is a oneof member, which has presence too. The bytes on the wire are the same.
    file = descriptor_pb2.FileDescriptorProto(
        name="marquee_cli/reflection_subset.proto", package=package, syntax="proto2"
    )

    def message(name: str, field_name: str, number: int, type_name: str = "") -> None:
        entry = file.message_type.add(name=name).field.add(name=field_name, number=number)
        if type_name:
            entry.type = field_proto.TYPE_MESSAGE
            entry.type_name = f".{package}.{type_name}"
        else:
            entry.type = field_proto.TYPE_STRING
        repeated = name == "ListServiceResponse"
        entry.label = field_proto.LABEL_REPEATED if repeated else field_proto.LABEL_OPTIONAL

    message("ServerReflectionRequest", "list_services", 7)
    message("ServiceResponse", "name", 1)
    message("ListServiceResponse", "service", 1, "ServiceResponse")
    message("ServerReflectionResponse", "list_services_response", 6, "ListServiceResponse")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request, response = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in ("ServerReflectionRequest", "ServerReflectionResponse")
    )
    return request, response
