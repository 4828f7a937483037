"""Run a service's registrar in this process, on a free port, for a test.

Tests of a servicer want the real server stack (interceptors, error mapping,
health, reflection) without a subprocess; this wraps `marquee_platform.serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from marquee_platform import Registrar, ServerInfo, ServiceContext, ServiceSettings, serve


@dataclass(frozen=True)
class RunningService:
    address: str
    info: ServerInfo
    services: Sequence[str]
    channel: grpc.aio.Channel
    context: ServiceContext


@contextlib.asynccontextmanager
async def serving(
    name: str, settings: ServiceSettings, register: Registrar, *, startup_timeout: float = 10.0
) -> AsyncIterator[RunningService]:
    """Serve until the block exits, then drain as on SIGTERM and re-raise any server error."""
    registered: list[str] = []
    contexts: list[ServiceContext] = []

    async def recording_register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
        contexts.append(ctx)
        registered.extend(await register(server, ctx))
        return registered

    started: asyncio.Future[ServerInfo] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(name, settings, recording_register, started=started.set_result, stop=stop)
    )
    first: list[asyncio.Future[Any]] = [task, started]
    done, _ = await asyncio.wait(first, timeout=startup_timeout, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises why the server could not start
        raise RuntimeError(f"{name} stopped before it started serving")
    if not done:
        task.cancel()
        raise TimeoutError(f"{name} did not start serving within {startup_timeout} s")
    info = started.result()
    address = f"{settings.grpc_host}:{info.grpc_port}"
    channel = grpc.aio.insecure_channel(address)
    try:
        yield RunningService(address, info, tuple(registered), channel, contexts[0])
    finally:
        await channel.close()
        stop.set()
        await task
