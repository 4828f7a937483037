"""Requests that go wrong before a handler can answer: undecodable, too large, too late.

Each answers a clear status (never UNKNOWN naming a Python class) and is
counted in marquee_grpc_server_handled_total with that code, like any call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2
from platform_echo_service import SERVICE, EchoService, EchoSettings
from platform_serving import Running, handled_total, scrape, serving

# Field 1 (the service name, length-delimited) says 5 bytes follow; 2 do.
TRUNCATED = b"\x0a\x05ab"
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
LIMIT = 1024

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


# Bytes as they are: no serializers.
def raw_unary(running: Running, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return running.channel.unary_unary(method)


def raw_unary_stream(
    running: Running, method: str
) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
    return running.channel.unary_stream(method)


async def counted(running: Running, method: str, code: str, at_least: float) -> float:
    """The handled count of (method, code) once it reaches `at_least` (5 s at most).

    A call the server ends on its own (a deadline) may be counted just after
    the client has its answer.
    """
    async with asyncio.timeout(5):
        while (count := handled_total(await scrape(running), method, code)) < at_least:
            await asyncio.sleep(0.05)
    return count


async def test_a_unary_request_that_does_not_decode_is_invalid_argument(
    echo: tuple[EchoService, Running],
) -> None:
    _, running = echo
    before = handled_total(await scrape(running), CHECK, "INVALID_ARGUMENT")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_unary(running, CHECK)(TRUNCATED, timeout=5)
    assert caught.value.code() == INVALID_ARGUMENT
    assert caught.value.details() == (
        "the request does not decode as a grpc.health.v1.HealthCheckRequest message"
    )
    assert await counted(running, CHECK, "INVALID_ARGUMENT", before + 1) == before + 1
    # The server is unharmed: a well-formed request still answers.
    check = running.channel.unary_unary(
        CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply = await check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_request_to_a_stream_that_does_not_decode_is_invalid_argument(
    echo: tuple[EchoService, Running],
) -> None:
    _, running = echo
    before = handled_total(await scrape(running), WATCH, "INVALID_ARGUMENT")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in raw_unary_stream(running, WATCH)(TRUNCATED, timeout=5):
            pass
    assert caught.value.code() == INVALID_ARGUMENT
    assert "grpc.health.v1.HealthCheckRequest" in str(caught.value.details())
    assert await counted(running, WATCH, "INVALID_ARGUMENT", before + 1) == before + 1


async def test_a_streamed_message_that_does_not_decode_is_invalid_argument(
    echo: tuple[EchoService, Running],
) -> None:
    _, running = echo
    before = handled_total(await scrape(running), REFLECTION, "INVALID_ARGUMENT")
    call: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = running.channel.stream_stream(
        REFLECTION
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call(iter([TRUNCATED]), timeout=5):
            pass
    assert caught.value.code() == INVALID_ARGUMENT
    assert caught.value.details() == (
        "the request does not decode as a grpc.reflection.v1alpha.ServerReflectionRequest message"
    )
    assert await counted(running, REFLECTION, "INVALID_ARGUMENT", before + 1) == before + 1


@pytest.fixture
async def limited() -> AsyncIterator[Running]:
    settings = EchoSettings(grpc_max_receive_message_bytes=LIMIT)
    async with serving(EchoService().register, settings) as running:
        yield running


async def test_a_request_over_the_receive_limit_is_resource_exhausted(limited: Running) -> None:
    method = f"/{SERVICE}/Echo"
    before = handled_total(await scrape(limited), method, "RESOURCE_EXHAUSTED")
    assert await limited.unary("Echo")(b"x" * LIMIT, timeout=5) == b"x" * LIMIT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await limited.unary("Echo")(b"x" * (LIMIT + 1), timeout=5)
    assert caught.value.code() == RESOURCE_EXHAUSTED
    assert caught.value.details() == (
        f"the request message is {LIMIT + 1} bytes, over this server's limit of {LIMIT} bytes"
    )
    assert await counted(limited, method, "RESOURCE_EXHAUSTED", before + 1) == before + 1


async def test_a_streamed_message_over_the_receive_limit_ends_the_call(limited: Running) -> None:
    """Counted as RESOURCE_EXHAUSTED, where grpc alone ends the handler's stream early."""
    method = f"/{SERVICE}/Collect"
    text = await scrape(limited)
    before = {code: handled_total(text, method, code) for code in ("OK", "RESOURCE_EXHAUSTED")}

    def messages() -> Iterator[bytes]:
        yield b"a"
        yield b"x" * (LIMIT + 1)
        yield b"b"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await limited.stream_unary("Collect")(messages(), timeout=5)
    assert caught.value.code() == RESOURCE_EXHAUSTED
    assert f"limit of {LIMIT} bytes" in str(caught.value.details())
    after = await counted(limited, method, "RESOURCE_EXHAUSTED", before["RESOURCE_EXHAUSTED"] + 1)
    assert after == before["RESOURCE_EXHAUSTED"] + 1
    assert handled_total(await scrape(limited), method, "OK") == before["OK"]


async def test_far_over_the_receive_limit_grpc_refuses_before_reading(limited: Running) -> None:
    """Past twice the limit grpc's transport refuses the message unread, naming its own bound."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await limited.unary("Echo")(b"x" * (2 * LIMIT + 1), timeout=5)
    assert caught.value.code() == RESOURCE_EXHAUSTED
    assert "larger than max" in str(caught.value.details())


async def test_a_response_over_the_send_limit_is_resource_exhausted() -> None:
    # The receive limit lets the request in; the send limit holds its echo back.
    settings = EchoSettings(
        grpc_max_receive_message_bytes=4 * LIMIT, grpc_max_send_message_bytes=LIMIT
    )
    async with serving(EchoService().register, settings) as running:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.unary("Echo")(b"x" * (LIMIT + 1), timeout=5)
    assert caught.value.code() == RESOURCE_EXHAUSTED
    assert f"{LIMIT}" in str(caught.value.details())


async def test_a_call_past_its_deadline_is_counted_as_deadline_exceeded(
    echo: tuple[EchoService, Running],
) -> None:
    service, running = echo
    method = f"/{SERVICE}/Slow"
    text = await scrape(running)
    before = {c: handled_total(text, method, c) for c in ("CANCELLED", "DEADLINE_EXCEEDED")}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.unary("Slow")(b"30", timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    after = await counted(running, method, "DEADLINE_EXCEEDED", before["DEADLINE_EXCEEDED"] + 1)
    assert after == before["DEADLINE_EXCEEDED"] + 1

    # A caller that gives up before its deadline is still CANCELLED.
    service.slow_started.clear()
    call = running.unary("Slow")(b"30", timeout=30)
    await asyncio.wait_for(service.slow_started.wait(), 5)
    call.cancel()
    after = await counted(running, method, "CANCELLED", before["CANCELLED"] + 1)
    assert after == before["CANCELLED"] + 1
    assert handled_total(await scrape(running), method, "DEADLINE_EXCEEDED") == (
        before["DEADLINE_EXCEEDED"] + 1
    )
