"""pending_servicer() answers UNIMPLEMENTED with a useful message, for unary and streaming RPCs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marquee_platform.observed import ObservedServer, RpcObserver
from marquee_platform.placeholders import pending_servicer

# Stands in for a generated servicer: Check is unary, Watch streams responses.
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]


@pytest.fixture
async def pending_health() -> AsyncIterator[grpc.aio.Channel]:
    # A server of its own: serve() would add the real Health service under the same name.
    server = ObservedServer(grpc.aio.server(), RpcObserver(None))
    servicer = pending_servicer(health_pb2_grpc.HealthServicer, HEALTH, "issue: health")
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def test_a_unary_method_answers_unimplemented(pending_health: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(pending_health)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.details() == (
        "grpc.health.v1.Health/Check is not implemented yet: issue: health"
    )


async def test_a_streaming_method_answers_unimplemented(pending_health: grpc.aio.Channel) -> None:
    watch = health_pb2_grpc.HealthStub(pending_health).Watch(health_pb2.HealthCheckRequest())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch.read()
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert caught.value.details() == (
        "grpc.health.v1.Health/Watch is not implemented yet: issue: health"
    )
