"""The search service as its own OS process (`python -m marquee_search`), for crash tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marquee.search.v1 import search_pb2_grpc
from marquee_localservers import free_port
from marquee_localservers.spawning import child_argv

if TYPE_CHECKING:
    from marquee.search.v1.search_pb2_grpc import SearchServiceAsyncStub


class SearchProcess:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "MARQUEE_SEARCH_GRPC_PORT": str(self.port),
            "MARQUEE_SEARCH_METRICS_PORT": "-1",
            "MARQUEE_SEARCH_DATA_DIR": str(data_dir),
            "MARQUEE_SEARCH_BACKEND": "embedded",
            "MARQUEE_SEARCH_LOG_LEVEL": "WARNING",
            "MARQUEE_SEARCH_SHUTDOWN_GRACE_SECONDS": "2",
        }
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                # Dies with the test process (setpriv's death signal), no preexec_fn.
                child_argv([sys.executable, "-m", "marquee_search"]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub: SearchServiceAsyncStub = search_pb2_grpc.SearchServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    async def wait_serving(self, timeout: float = 60.0) -> None:
        request = health_pb2.HealthCheckRequest(service="")
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"search exited: {self.log_path.read_text()[-2000:]}")
                try:
                    reply = await self._health.Check(request, timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no drain, no shutdown callback, nothing flushed."""
        self.proc.kill()
        await asyncio.to_thread(self.proc.wait, 15)
        await self.channel.close()

    async def stop(self) -> int:
        await self.channel.close()
        self.proc.terminate()
        return await asyncio.to_thread(self.proc.wait, 15)
