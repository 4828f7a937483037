"""The floor under Marquee's renewal figures: the platform's gRPC server answering at once.

Run as a script, this is one `run_service` process (the coordinator's own
server stack: uvloop, the platform's interceptors and options) whose
LeaseService answers Renew and every KeepAlive message straight away, with
no lease table and no Raft. Marquee's renewals cannot beat it: what it
reaches is what any Python service on this gRPC stack reaches on this
machine, so Marquee's ratio to it is what the renewal path itself costs,
and etcd's ratio to it is what the Go server has over the Python one.

In the bench, FloorServer drives it through the same raw stubs and the same
request messages as MarqueeCluster, for the throughput figures only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from coordinator.coordinator_bench_cluster import CALL_TIMEOUT, STREAM_TIMEOUT, MarqueeKeepAlive
from coordinator.coordinator_bench_measure import Grant
from pydantic_settings import SettingsConfigDict

from marquee.coordinator.v1 import lease_pb2, lease_pb2_grpc
from marquee_localservers import free_port
from marquee_localservers.spawning import child_argv
from marquee_platform import ServiceContext, ServiceSettings

Context = grpc.aio.ServicerContext[Any, Any]
UNSERVED = "the floor answers Acquire, Renew and KeepAlive only"


class FloorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_FLOOR_")


class NoopLeases(lease_pb2_grpc.LeaseServiceServicer):
    """Grants and renews anything, remembering nothing."""

    async def Acquire(
        self, request: lease_pb2.AcquireRequest, context: Context
    ) -> lease_pb2.AcquireResponse:
        lease = lease_pb2.Lease(name=request.name, holder_id=request.holder_id, token=1)
        return lease_pb2.AcquireResponse(acquired=True, lease=lease)

    async def Renew(
        self, request: lease_pb2.RenewRequest, context: Context
    ) -> lease_pb2.RenewResponse:
        return lease_pb2.RenewResponse(renewed=True)

    async def KeepAlive(
        self,
        request_iterator: AsyncIterator[lease_pb2.KeepAliveRequest],
        context: Context,
    ) -> AsyncIterator[lease_pb2.KeepAliveResponse]:
        async for _request in request_iterator:
            yield lease_pb2.KeepAliveResponse(alive=True)

    async def Release(
        self, request: lease_pb2.ReleaseRequest, context: Context
    ) -> lease_pb2.ReleaseResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, UNSERVED)

    async def Get(self, request: lease_pb2.GetRequest, context: Context) -> lease_pb2.GetResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, UNSERVED)

    async def List(
        self, request: lease_pb2.ListRequest, context: Context
    ) -> lease_pb2.ListResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, UNSERVED)

    async def Watch(
        self, request: lease_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[lease_pb2.WatchResponse]:
        no_events: tuple[lease_pb2.WatchResponse, ...] = ()
        for response in no_events:  # the loop makes this an async generator
            yield response
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, UNSERVED)


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    lease_pb2_grpc.add_LeaseServiceServicer_to_server(NoopLeases(), server)
    return ["marquee.coordinator.v1.LeaseService"]


class FloorServer:
    """`async with FloorServer() as floor:` one no-op server process, stopped on exit."""

    label = "floor"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-floor-")
        self.address = f"127.0.0.1:{free_port()}"
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: lease_pb2_grpc.LeaseServiceAsyncStub | None = None

    async def __aenter__(self) -> FloorServer:
        env = {
            **os.environ,
            "MARQUEE_FLOOR_GRPC_PORT": self.address.rpartition(":")[2],
            "MARQUEE_FLOOR_METRICS_PORT": "-1",
            "MARQUEE_FLOOR_LOG_LEVEL": "WARNING",
            "MARQUEE_FLOOR_PROFILE": "prod",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path]),
        }
        with (Path(self._tmp.name) / "floor.log").open("ab") as log:
            self._process = subprocess.Popen(
                child_argv([sys.executable, __file__]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._channel = grpc.aio.insecure_channel(self.address)
        self._stub = lease_pb2_grpc.LeaseServiceStub(self._channel)
        async with asyncio.timeout(60):
            await self._channel.channel_ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._tmp.cleanup()

    @property
    def pid(self) -> int:
        """The server process (for CPU accounting); it runs from __aenter__ on."""
        assert self._process is not None, "FloorServer is used inside `async with`"
        return self._process.pid

    async def use_leader(self) -> None:
        pass

    async def acquire(self, name: str, holder: str) -> Grant:
        assert self._stub is not None
        request = lease_pb2.AcquireRequest(name=name, holder_id=holder)
        reply = await self._stub.Acquire(request, timeout=CALL_TIMEOUT)
        return Grant(name, reply.acquired, reply.lease.holder_id, reply.lease.token)

    async def renew(self, grant: Grant) -> bool:
        assert self._stub is not None
        request = lease_pb2.RenewRequest(name=grant.name, holder_id=grant.holder, token=grant.token)
        reply = await self._stub.Renew(request, timeout=CALL_TIMEOUT)
        return reply.renewed

    async def open_keepalive(self) -> MarqueeKeepAlive:
        assert self._stub is not None
        return MarqueeKeepAlive(self._stub.KeepAlive(timeout=STREAM_TIMEOUT))


if __name__ == "__main__":
    from marquee_platform import run_service

    run_service("coordinator-floor", FloorSettings, register)
