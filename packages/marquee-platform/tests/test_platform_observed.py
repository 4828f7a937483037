"""ObservedServer wraps every handler once, whichever way a servicer registers it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import prometheus_client
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from marquee_platform.encoded import pre_encoded
from marquee_platform.observed import ObservedServer, RpcObserver, _ObservedGenericHandler


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class Switchable(grpc.GenericRpcHandler):
    """Answers /s/M with whatever handler it holds now, and nothing else."""

    def __init__(self) -> None:
        self.handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(echo)

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        return self.handler if details.method.startswith("/s/") else None


async def echo(request: Any, context: Any) -> Any:
    return request


def test_a_methods_wrapper_is_reused_until_its_handler_changes() -> None:
    inner = Switchable()
    generic = _ObservedGenericHandler(inner, RpcObserver(None))

    first = generic.service(Details("/s/M"))
    assert first is not None
    assert first is not inner.handler
    assert generic.service(Details("/s/M")) is first
    assert generic.service(Details("/s/Other")) is not first

    inner.handler = grpc.unary_unary_rpc_method_handler(echo)
    assert generic.service(Details("/s/M")) is not first
    assert generic.service(Details("/t/Nope")) is None


def handled(method: str, code: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "marquee_grpc_server_handled_total",
        {"grpc_service": "grpc.health.v1.Health", "grpc_method": method, "grpc_code": code},
    )
    return value or 0.0


HEALTH = "grpc.health.v1.Health"


def only_registered(servicer: health.aio.HealthServicer, server: grpc.aio.Server) -> None:
    """Like add_HealthServicer_to_server, without the generic handler it also adds."""
    checks: Any = grpc.unary_unary_rpc_method_handler(
        servicer.Check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    server.add_registered_method_handlers(HEALTH, {"Check": checks})


@pytest.mark.parametrize(
    "register",
    [health_pb2_grpc.add_HealthServicer_to_server, only_registered],
    ids=["generated", "registered-only"],
)
async def test_handlers_are_observed_however_they_are_added(register: Any) -> None:
    server = ObservedServer(grpc.aio.server(), RpcObserver(None))
    register(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        before = handled("Check", "OK"), handled("Check", "NOT_FOUND")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        # An abort sends the status before the handler's wrapper counts it: the
        # caller can see the answer a moment before the metric moves.
        expected = before[0] + 1, before[1] + 1
        async with asyncio.timeout(5):
            while (handled("Check", "OK"), handled("Check", "NOT_FOUND")) != expected:
                await asyncio.sleep(0.01)
    finally:
        await server.stop(None)


class Recording(grpc.aio.Server):
    """Keeps the generic handlers it is given; serves nothing."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        self.generic += generic_rpc_handlers

    def add_insecure_port(self, address: str) -> int:
        raise NotImplementedError

    def add_secure_port(self, address: str, server_credentials: Any) -> int:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self, grace: float | None) -> None:
        raise NotImplementedError

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        raise NotImplementedError


def test_generated_registration_adds_one_lookup_per_service() -> None:
    inner = Recording()
    server = ObservedServer(inner, RpcObserver(None))
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    assert len(inner.generic) == 1
    only_registered(health.aio.HealthServicer(), server)  # Check is served already
    assert len(inner.generic) == 1


class PreEncodedHealth:
    """Answers Check with a message or with bytes it encoded itself, Watch with bytes."""

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        status = health_pb2.HealthCheckResponse.SERVING
        if request.service == "encoded":
            encoded = health_pb2.HealthCheckResponse(status=status).SerializeToString()
            return pre_encoded(encoded, health_pb2.HealthCheckResponse)
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for status in (health_pb2.HealthCheckResponse.NOT_SERVING, SERVING):
            encoded = health_pb2.HealthCheckResponse(status=status).SerializeToString()
            yield pre_encoded(encoded, health_pb2.HealthCheckResponse)


SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_a_handler_may_answer_with_the_bytes_it_encoded() -> None:
    server = ObservedServer(grpc.aio.server(), RpcObserver(None))
    servicer = PreEncodedHealth()
    handlers: dict[str, Any] = {
        "Check": grpc.unary_unary_rpc_method_handler(
            servicer.Check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(HEALTH, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("encoded", "built"):
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert answer.status == SERVING, service
            watched = stub.Watch(health_pb2.HealthCheckRequest(), timeout=5)
            statuses = [answer.status async for answer in watched]
            assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING, SERVING]
    finally:
        await server.stop(None)
