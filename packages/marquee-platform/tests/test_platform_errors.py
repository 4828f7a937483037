"""Exceptions raised by handlers reach clients as the right status, through a real server."""

from __future__ import annotations

import grpc
import grpc.aio
import pydantic
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from platform_echo_service import LEADER, EchoService, Greeting
from platform_serving import Running

from marquee_platform import errors


async def call_error(running: Running, name: str, request: bytes = b"") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.unary(name)(request, timeout=5)
    return caught.value


def bad_request(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    [detail] = status.details
    found = error_details_pb2.BadRequest()
    assert detail.Unpack(found)
    return [(v.field, v.description) for v in found.field_violations]


async def test_success_passes_through(echo: tuple[EchoService, Running]) -> None:
    _, running = echo
    assert await running.unary("Echo")(b"hi", timeout=5) == b"hi"


async def test_invalid_argument_carries_field_violations(echo: tuple[EchoService, Running]) -> None:
    error = await call_error(echo[1], "Invalid")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "key is empty"
    assert bad_request(error) == [("key", "must not be empty")]


async def test_pydantic_validation_error_is_invalid_argument(
    echo: tuple[EchoService, Running],
) -> None:
    error = await call_error(echo[1], "Validate", b'{"name": "", "count": 0}')
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = dict(bad_request(error))
    assert set(violations) == {"name", "count"}
    assert "at least 1 character" in violations["name"]
    assert "name" in (error.details() or "")


async def test_unexpected_exception_is_internal_with_an_error_id(
    echo: tuple[EchoService, Running],
) -> None:
    error = await call_error(echo[1], "Crash")
    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert details.startswith("internal error (id ")
    assert "secret internals" not in details
    assert "Traceback" not in details


async def test_unimplemented_names_what_is_missing(echo: tuple[EchoService, Running]) -> None:
    error = await call_error(echo[1], "Pending")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "EchoService.Pending is not implemented yet (issue: echo)"


async def test_failed_precondition_sends_its_metadata(echo: tuple[EchoService, Running]) -> None:
    error = await call_error(echo[1], "Leader")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ("x-leader", LEADER) in tuple(error.trailing_metadata() or ())


async def test_context_abort_passes_through(echo: tuple[EchoService, Running]) -> None:
    error = await call_error(echo[1], "Abort")
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error.details() == "aborted by the handler"


async def test_streams_work_and_are_mapped(echo: tuple[EchoService, Running]) -> None:
    _, running = echo
    stream = running.unary_stream("Stream")
    assert [r async for r in stream(b"3", timeout=5)] == [b"0", b"1", b"2"]

    crashing = running.unary_stream("StreamCrash")(b"", timeout=5)
    assert await crashing.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await crashing.read()
    assert caught.value.code() == grpc.StatusCode.INTERNAL

    collect = running.stream_unary("Collect")
    assert await collect(iter([b"a", b"b"]), timeout=5) == b"ab"

    chat = running.stream_stream("Chat")(iter([b"x", b"bad"]), timeout=5)
    assert await chat.read() == b"X"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await chat.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_field_violations_from_pydantic_error() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Greeting.model_validate({"name": "x", "count": "many"})
    assert errors.field_violations_from(caught.value) == [
        ("count", "Input should be a valid integer, unable to parse string as an integer")
    ]
