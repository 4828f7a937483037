"""run_service() as a real process: exit codes, signals and what lands on stderr."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from platform_echo_service import SERVICE

SCRIPT = Path(__file__).with_name("platform_echo_service.py")

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_ECHO_")}
    return env | variables


async def test_a_bad_setting_exits_2_with_one_line() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        env=environment(MARQUEE_ECHO_GRPC_PORT="lots"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("echo: invalid setting MARQUEE_ECHO_GRPC_PORT: ")
    assert "Traceback" not in stderr.decode()


class EchoProcess:
    """The echo service run by run_service() in a child process, its stderr parsed as JSON."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, **variables: str) -> EchoProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            env=environment(**variables),
            stderr=asyncio.subprocess.PIPE,
        )
        echo = cls(process)
        assert process.stderr is not None
        while not echo.events("serving"):
            raw = await asyncio.wait_for(process.stderr.readline(), 30)
            assert raw, "the service exited before serving"
            echo.lines.append(json.loads(raw))  # every line must be JSON
        return echo

    @property
    def target(self) -> str:
        [serving] = self.events("serving")
        return str(serving["grpc_address"])

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == event]

    async def wait(self) -> int:
        _, rest = await asyncio.wait_for(self.process.communicate(), 30)
        self.lines += [json.loads(raw) for raw in rest.splitlines()]
        assert self.process.returncode is not None
        return self.process.returncode


def unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{SERVICE}/{method}")


async def test_sigterm_drains_and_exits_0_with_json_logs() -> None:
    echo = await EchoProcess.start()
    async with grpc.aio.insecure_channel(echo.target) as channel:
        assert await unary(channel, "Echo")(b"hi", timeout=5) == b"hi"
        traceparent = ("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        assert await unary(channel, "Echo")(b"hi", timeout=5, metadata=(traceparent,)) == b"hi"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel, "Crash")(b"", timeout=5)

    echo.process.send_signal(signal.SIGTERM)
    assert await echo.wait() == 0

    assert all(line["service"] == "echo" for line in echo.lines)
    for event in ("shutting down", "stopped", "stdlib logger says hello"):
        assert echo.events(event), f"no {event!r} line"
    # Unsampled without an exporter, but each call has a trace id, and the caller's
    # is continued.
    [own, continued] = echo.events("echo called")
    assert len(own["trace_id"]) == 32
    assert own["trace_id"] != CALLER_TRACE
    assert continued["trace_id"] == CALLER_TRACE
    assert continued["span_id"] != CALLER_SPAN
    assert own["gc_frozen"] > 10_000, "start-up's heap is kept out of later GC passes"

    # The client's INTERNAL message and the one traceback logged share the error id.
    [crash] = echo.events("unhandled error in handler")
    assert caught.value.details() == f"internal error (id {crash['error_id']})"
    assert "RuntimeError: secret internals" in crash["exception"]
    assert len(crash["trace_id"]) == 32


async def test_a_free_port_is_reported_in_the_log_and_the_port_file(tmp_path: Path) -> None:
    port_file = tmp_path / "run" / "echo.port"
    echo = await EchoProcess.start(
        MARQUEE_ECHO_GRPC_PORT="0", MARQUEE_ECHO_PORT_FILE=str(port_file)
    )
    try:
        [serving] = echo.events("serving")
        port = serving.get("grpc_port")
        assert isinstance(port, int)
        assert port > 0
        assert serving["grpc_address"] == f"127.0.0.1:{port}"
        # Written before the "serving" line, whole (no reader sees a partial file).
        assert port_file.read_text() == f"{port}\n"
        assert [p.name for p in port_file.parent.iterdir()] == ["echo.port"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await unary(channel, "Echo")(b"hi", timeout=5) == b"hi"
    finally:
        echo.process.send_signal(signal.SIGTERM)
        assert await echo.wait() == 0
    assert not port_file.exists(), "a stopped service leaves no port behind"


async def test_a_second_sigterm_stops_without_waiting_for_the_grace() -> None:
    echo = await EchoProcess.start(MARQUEE_ECHO_SHUTDOWN_GRACE_SECONDS="60")
    async with grpc.aio.insecure_channel(echo.target) as channel:
        slow = unary(channel, "Slow")(b"60", timeout=90)
        await asyncio.sleep(0.2)  # let the call reach the handler
        echo.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        echo.process.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError):
            await slow
        assert await echo.wait() == 0


async def test_spans_are_exported_over_otlp_when_an_endpoint_is_set() -> None:
    exported: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def export(
        request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        exported.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    # A stand-in collector: the OTLP trace service, served by plain grpc.
    collector = grpc.aio.server()
    collector.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {
                    "Export": grpc.unary_unary_rpc_method_handler(
                        export,
                        request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                        response_serializer=(
                            trace_service_pb2.ExportTraceServiceResponse.SerializeToString
                        ),
                    )
                },
            )
        ]
    )
    collector_port = collector.add_insecure_port("127.0.0.1:0")
    await collector.start()
    try:
        echo = await EchoProcess.start(
            MARQUEE_ECHO_OTLP_ENDPOINT=f"http://127.0.0.1:{collector_port}"
        )
        async with grpc.aio.insecure_channel(echo.target) as channel:
            # A caller's W3C trace context: the server span must continue it.
            traceparent = ("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            reply = await unary(channel, "Echo")(b"hi", timeout=5, metadata=(traceparent,))
            assert reply == b"hi"
        echo.process.send_signal(signal.SIGTERM)
        assert await echo.wait() == 0  # the exit flushes the batch of spans
    finally:
        await collector.stop(None)

    spans = [
        (resource_spans.resource, span)
        for request in exported
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    [(resource, span)] = [(r, s) for r, s in spans if s.name == f"{SERVICE}/Echo"]
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["service.name"] == "echo"
    span_attributes = {a.key: a.value for a in span.attributes}
    assert span_attributes["rpc.system"].string_value == "grpc"
    assert span_attributes["rpc.method"].string_value == "Echo"
    assert span_attributes["rpc.grpc.status_code"].int_value == 0
    assert span.trace_id.hex() == CALLER_TRACE
    assert span.parent_span_id.hex() == CALLER_SPAN
    [echo_called] = echo.events("echo called")
    assert span.trace_id.hex() == echo_called["trace_id"]
