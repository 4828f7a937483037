"""`marquee cache get|set|del|prefix-del` against an in-process gateway."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from typer.testing import CliRunner, Result

from marquee_cli.endpoints import Endpoints, ProcessEndpoint, now, write_endpoints
from marquee_cli.main import app
from marquee_testing.inprocess import RunningService

runner = CliRunner()


async def marquee(*args: str) -> Result:
    # The commands block on their own gRPC channel: not on this test's event loop,
    # which serves the gateway.
    return await asyncio.to_thread(runner.invoke, app, ["cache", *args])


async def test_set_get_del_prefix_del(gateway: RunningService, ns: str) -> None:
    at = ["--address", gateway.address]
    assert (await marquee("set", ns + "a", "hello", "--ttl", "30", *at)).exit_code == 0
    got = await marquee("get", ns + "a", "--json", *at)
    assert got.exit_code == 0, got.output
    document = json.loads(got.output)
    assert document["found"] is True
    assert document["value"] == "hello"
    assert (await marquee("get", ns + "a", *at)).output == "hello\n"

    missing = await marquee("get", ns + "nope", "--json", *at)
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["found"] is False

    refused = await marquee("set", ns + "a", "x", "--if-absent", *at)
    assert refused.exit_code == 1
    binary = await marquee("set", ns + "b", "/w==", "--base64", *at)
    assert binary.exit_code == 0
    assert json.loads((await marquee("get", ns + "b", "--json", *at)).output) | {"layer": ""} == {
        "found": True, "value": "/w==", "encoding": "base64", "layer": ""
    }  # fmt: skip

    deleted = await marquee("del", ns + "a", ns + "absent", "--json", *at)
    assert json.loads(deleted.output) == {"deleted": 1}
    await marquee("set", ns + "p:1", "1", *at)
    await marquee("set", ns + "p:2", "2", *at)
    assert (await marquee("prefix-del", ns + "p:", *at)).output == "deleted 2 keys\n"


async def test_address_from_the_suite_endpoints(
    gateway: RunningService, ns: str, tmp_path: Path
) -> None:
    write_endpoints(
        tmp_path / "endpoints.json",
        Endpoints(
            launcher_pid=os.getpid(),
            started_at=now(),
            processes=[
                ProcessEndpoint("cache-gateway", "service", os.getpid(), grpc=gateway.address)
            ],
        ),
    )
    result = await marquee("set", ns + "k", "v", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output


async def test_errors_are_one_line(gateway: RunningService, tmp_path: Path) -> None:
    bad = await marquee("get", "", "--address", gateway.address)
    assert bad.exit_code == 1
    assert "INVALID_ARGUMENT" in bad.output
    no_suite = await marquee("get", "k", "--data-dir", str(tmp_path))
    assert no_suite.exit_code == 1
    assert "no suite running" in no_suite.output
