"""A cache gateway as its own OS process (`python -m marquee_cache_gateway`), for tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marquee.cache.v1 import cache_pb2_grpc
from marquee_localservers import free_port

if TYPE_CHECKING:  # the async stub class exists only in the type stubs
    from marquee.cache.v1.cache_pb2_grpc import CacheServiceAsyncStub

# Short deadlines so faults show within a test's patience.
FAST_SETTINGS = {
    "REDIS_COMMAND_TIMEOUT": "0.5",
    "REDIS_CONNECT_TIMEOUT": "0.2",
    "TRACKING_HEARTBEAT_INTERVAL": "0.1",
    "TRACKING_RECONNECT_MAX_DELAY": "0.2",
    "BREAKER_RESET_TIMEOUT": "0.3",
    "HEALTH_INTERVAL": "0.05",
}


class GatewayProcess:
    def __init__(self, redis_url: str, log_dir: Path, name: str) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "MARQUEE_CACHE_GRPC_PORT": str(self.port),
            "MARQUEE_CACHE_METRICS_PORT": str(self.metrics_port),
            "MARQUEE_CACHE_REDIS_URL": redis_url,
            "MARQUEE_CACHE_LOG_LEVEL": "WARNING",
            "MARQUEE_CACHE_SHUTDOWN_GRACE_SECONDS": "2",
            **{f"MARQUEE_CACHE_{k}": v for k, v in FAST_SETTINGS.items()},
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "marquee_cache_gateway"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub: CacheServiceAsyncStub = cache_pb2_grpc.CacheServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def status(self, service: str) -> int:
        reply = await self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        return int(reply.status)

    async def wait_status(self, service: str, status: int, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if await self.status(service) == status:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.05)

    async def stop(self) -> int:
        await self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 15)
