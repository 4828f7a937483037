"""`marquee status` against a real cache gateway whose Redis is down.

The process answers health "" SERVING (it is alive and recovers by itself), but its
CacheService is NOT_SERVING: status has to say so, and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee_cache_gateway.app import register
from marquee_cache_gateway.health import SERVICE_NAME
from marquee_cache_gateway.settings import CacheSettings
from marquee_cli.endpoints import Endpoints, ProcessEndpoint, now, write_endpoints
from marquee_cli.main import app
from marquee_localservers import free_port
from marquee_testing.inprocess import RunningService, serving

runner = CliRunner()


@pytest.fixture
async def gateway_without_redis() -> AsyncIterator[RunningService]:
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    settings = CacheSettings(
        grpc_port=0,
        metrics_port=-1,
        redis_url=nothing_there,  # type: ignore[arg-type]
        redis_connect_timeout=0.2,
    )
    async with serving("cache-gateway", settings, register, startup_timeout=30) as running:
        yield running


async def test_status_shows_the_cache_service_not_serving(
    gateway_without_redis: RunningService, tmp_path: Path
) -> None:
    write_endpoints(
        tmp_path / "endpoints.json",
        Endpoints(
            launcher_pid=os.getpid(),
            started_at=now(),
            processes=[
                ProcessEndpoint(
                    "cache-gateway",
                    "service",
                    os.getpid(),
                    grpc=gateway_without_redis.address,
                    metrics="x:1",
                )
            ],
        ),
    )
    result = await asyncio.to_thread(
        runner.invoke, app, ["status", "--data-dir", str(tmp_path), "--json"]
    )
    assert result.exit_code == 1, result.output
    [gateway] = json.loads(result.stdout)["processes"]
    assert gateway["server_health"] == "SERVING"
    assert gateway["services"] == {SERVICE_NAME: "NOT_SERVING"}
    assert gateway["health"] == "NOT_SERVING"
