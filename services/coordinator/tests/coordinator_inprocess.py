"""One coordinator node served in-process (real Raft, real gRPC), for service-level tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from coordinator_cluster import free_port
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from marquee_coordinator.app import register
from marquee_coordinator.errors import Unavailable
from marquee_coordinator.settings import CoordinatorSettings
from marquee_testing.inprocess import RunningService, serving

SECRET = "s3cret"
LEASE_SERVICE = "marquee.coordinator.v1.LeaseService"


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


# A port picked free can be taken (an outgoing connection's ephemeral port, another
# test's server) before the node binds it: then the node starts again on new ports.
BIND_ATTEMPTS = 3


def _bind_failure(exc: BaseException) -> bool:
    return isinstance(exc, Unavailable) or "Failed to bind" in str(exc)


@contextlib.asynccontextmanager
async def serving_node(data_dir: Path, **overrides: Any) -> AsyncIterator[RunningService]:
    """A single-node cluster (fast timing) that serves once its health says so."""
    for attempt in range(1, BIND_ATTEMPTS + 1):
        settings = CoordinatorSettings(
            **{
                "grpc_port": free_port(),
                "metrics_port": -1,
                "node_id": 1,
                "raft_address": f"127.0.0.1:{free_port()}",
                "data_dir": data_dir,
                "cluster_secret": SecretStr(SECRET),
                "raft_timing": "fast",
                "shutdown_grace_seconds": 2,
                **overrides,
            }
        )
        stack = contextlib.AsyncExitStack()
        try:
            running = await stack.enter_async_context(serving("coordinator", settings, register))
        except (RuntimeError, Unavailable) as exc:
            await stack.aclose()
            if attempt < BIND_ATTEMPTS and _bind_failure(exc):
                continue
            raise
        break
    async with stack:
        health = health_pb2_grpc.HealthStub(running.channel)
        async with asyncio.timeout(30):
            while True:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=LEASE_SERVICE))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.02)
        yield running
