"""grpc.health.v1 and server reflection, as a probe or grpcurl would use them."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from platform_echo_service import SERVICE, EchoService
from platform_serving import Running, serving

from marquee_platform import ServiceContext

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(running: Running, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(running.channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = response.status
    return status


async def test_every_registered_service_and_the_server_are_serving(
    echo: tuple[EchoService, Running],
) -> None:
    _, running = echo
    assert await check(running, SERVICE) == SERVING
    assert await check(running, "") == SERVING


async def test_set_serving_changes_one_service(echo: tuple[EchoService, Running]) -> None:
    service, running = echo
    service.context.set_serving(SERVICE, False)
    await asyncio.sleep(0.05)
    assert await check(running, SERVICE) == NOT_SERVING
    service.context.set_serving(SERVICE, True)
    await asyncio.sleep(0.05)
    assert await check(running, SERVICE) == SERVING


async def test_a_registrar_can_start_not_serving() -> None:
    inner = EchoService()

    async def register(server: grpc.aio.Server, context: ServiceContext) -> list[str]:
        names = list(await inner.register(server, context))
        context.set_serving(SERVICE, False)  # e.g. until its backend is reachable
        return names

    async with serving(register) as running:
        assert await check(running, SERVICE) == NOT_SERVING
        assert await check(running, "") == SERVING


async def test_health_turns_not_serving_when_shutdown_starts(
    echo: tuple[EchoService, Running],
) -> None:
    _, running = echo
    stub = health_pb2_grpc.HealthStub(running.channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    assert (await watch.read()).status == SERVING
    running.stop.set()
    assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
    watch.cancel()  # otherwise this open stream would hold the drain for the whole grace


async def test_reflection_lists_the_services(echo: tuple[EchoService, Running]) -> None:
    _, running = echo
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = stub.ServerReflectionInfo(iter([request]), timeout=5)
    names = {s.name async for r in responses for s in r.list_services_response.service}
    assert names == {
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def reflect_v1(running: Running, **request: str) -> list[Any]:
    """One grpc.reflection.v1 request and its responses, in v1's own message types."""
    pool = descriptor_pool.Default()
    request_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    call = running.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return [r async for r in call(iter([request_class(**request)]), timeout=5)]


async def test_reflection_v1_lists_the_services(echo: tuple[EchoService, Running]) -> None:
    [response] = await reflect_v1(echo[1], list_services="")
    names = {s.name for s in response.list_services_response.service}
    assert {SERVICE, "grpc.reflection.v1.ServerReflection"} <= names


async def test_reflection_v1_describes_itself(echo: tuple[EchoService, Running]) -> None:
    symbol = "grpc.reflection.v1.ServerReflection"
    [response] = await reflect_v1(echo[1], file_containing_symbol=symbol)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    [reflection_file] = [f for f in files if f.package == "grpc.reflection.v1"]
    [service] = reflection_file.service
    [method] = service.method
    assert (service.name, method.name) == ("ServerReflection", "ServerReflectionInfo")
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming
    assert method.server_streaming


async def test_reflection_describes_the_health_service(echo: tuple[EchoService, Running]) -> None:
    _, running = echo

    def describe() -> list[str]:
        # The reflection client library is synchronous, as grpcurl's would be.
        with grpc.insecure_channel(f"127.0.0.1:{running.info.grpc_port}") as channel:
            pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
            health = pool.FindServiceByName("grpc.health.v1.Health")
            return [m.name for m in health.methods]

    assert set(await asyncio.to_thread(describe)) >= {"Check", "Watch"}
