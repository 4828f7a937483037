"""`marquee cache get|set` with binary, piped, file and oversized values, on a real gateway."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner, Result

from marquee.cache.v1 import cache_pb2
from marquee_cache_gateway.app import register
from marquee_cache_gateway.settings import CacheSettings
from marquee_cli.cache_commands import DEFAULT_MAX_MESSAGE_BYTES
from marquee_cli.main import app
from marquee_testing.inprocess import RunningService, serving

runner = CliRunner()
BINARY = bytes(range(256))
_ids = itertools.count()


@pytest.fixture(scope="module")
async def gateway(redis_url: str) -> AsyncIterator[RunningService]:
    settings = CacheSettings(grpc_port=0, metrics_port=-1, redis_url=redis_url)  # type: ignore[arg-type]
    async with serving("cache-gateway", settings, register) as running:
        yield running


@pytest.fixture
def key() -> str:
    """A key of its own per test: the session Redis is shared."""
    return f"cli-values:{next(_ids)}"


async def cache(gateway: RunningService, *args: str, stdin: bytes | None = None) -> Result:
    # The command blocks on its own channel: off this loop, which serves the gateway.
    argv = ["cache", *args, "--address", gateway.address]
    return await asyncio.to_thread(runner.invoke, app, argv, input=stdin)


def error_of(result: Result) -> Any:
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)["error"]


async def test_binary_values_round_trip_through_a_file_and_raw(
    gateway: RunningService, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(BINARY)
    stored = await cache(gateway, "set", key, "--file", str(source))
    assert stored.exit_code == 0, stored.output

    raw = await cache(gateway, "get", key, "--raw")
    assert raw.exit_code == 0, raw.output
    assert raw.stdout_bytes == BINARY  # exactly the bytes: no newline, no decoding

    as_json = json.loads((await cache(gateway, "get", key, "--json")).stdout)
    assert as_json["encoding"] == "base64"
    assert base64.b64decode(as_json["value"]) == BINARY


async def test_text_output_refuses_a_binary_value(gateway: RunningService, key: str) -> None:
    await cache(gateway, "set", key, "-", stdin=b"\x1b[2Jgone\x00")
    shown = await cache(gateway, "get", key)
    assert shown.exit_code == 1
    assert "\x1b" not in shown.output
    assert "not printable text" in shown.stderr
    assert "--raw" in shown.stderr


async def test_set_reads_stdin_for_a_dash(gateway: RunningService, key: str) -> None:
    stored = await cache(gateway, "set", key, "-", stdin=b"piped\nlines\n")
    assert stored.exit_code == 0, stored.output
    shown = await cache(gateway, "get", key)
    assert shown.stdout == "piped\nlines\n\n"


async def test_set_needs_exactly_one_source(
    gateway: RunningService, key: str, tmp_path: Path
) -> None:
    neither = await cache(gateway, "set", key)
    assert neither.exit_code == 2
    (tmp_path / "v").write_bytes(b"x")
    both = await cache(gateway, "set", key, "v", "--file", str(tmp_path / "v"))
    assert both.exit_code == 2
    missing = await cache(gateway, "set", key, "--file", str(tmp_path / "nope"), "--json")
    assert missing.exit_code == 1
    assert "cannot read the value" in error_of(missing)["message"]


async def test_a_value_over_the_message_limit_is_refused_before_sending(
    gateway: RunningService, key: str, tmp_path: Path
) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (DEFAULT_MAX_MESSAGE_BYTES + 1))
    from_file = await cache(gateway, "set", key, "--file", str(big), "--json")
    assert from_file.exit_code == 1
    error = error_of(from_file)
    assert error["kind"] == "too_large"
    assert error["limit_bytes"] == DEFAULT_MAX_MESSAGE_BYTES
    assert "gRPC message" in error["message"]

    piped = await cache(gateway, "set", key, "-", stdin=b"y" * (DEFAULT_MAX_MESSAGE_BYTES + 10))
    assert piped.exit_code == 1
    assert "too large for one gRPC message" in piped.stderr

    # Just under the limit as a value, just over it as a message (key, framing).
    nearly = b"z" * (DEFAULT_MAX_MESSAGE_BYTES - 2)
    framed = await cache(gateway, "set", key, "-", stdin=nearly)
    assert framed.exit_code == 1
    assert "too large for one gRPC message" in framed.stderr
    assert (await cache(gateway, "get", key)).exit_code == 1  # nothing was sent


@pytest.fixture
def small_server() -> Iterator[str]:
    """A CacheService/Set that accepts at most 1 KiB per message, as a configured gateway would."""

    def set_value(request: cache_pb2.SetRequest, context: grpc.ServicerContext) -> Any:
        return cache_pb2.SetResponse(stored=True)

    handler = grpc.method_handlers_generic_handler(
        "marquee.cache.v1.CacheService",
        {
            "Set": grpc.unary_unary_rpc_method_handler(
                set_value,
                request_deserializer=cache_pb2.SetRequest.FromString,
                response_serializer=cache_pb2.SetResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=2), options=[("grpc.max_receive_message_length", 1024)]
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_resource_exhausted_from_the_server_names_the_limit(small_server: str) -> None:
    result = runner.invoke(
        app, ["cache", "set", "k", "-", "--address", small_server, "--json"], input=b"v" * 4096
    )
    assert result.exit_code == 1
    error = error_of(result)
    assert error["grpc_status"] == "RESOURCE_EXHAUSTED"
    assert "over the gRPC message-size limit" in error["message"]
    assert "--max-message-bytes" in error["message"]


async def test_a_value_argument_keeps_its_bytes(gateway: RunningService, key: str) -> None:
    # A shell passes bytes; those that are not UTF-8 reach argv as surrogate escapes.
    stored = await cache(gateway, "set", key, b"caf\xe9".decode("utf-8", "surrogateescape"))
    assert stored.exit_code == 0, stored.output
    assert (await cache(gateway, "get", key, "--raw")).stdout_bytes == b"caf\xe9"
