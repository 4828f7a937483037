"""Graceful shutdown: drain in-flight calls, then owned tasks, then shutdown callbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import pytest
from platform_echo_service import EchoService, EchoSettings
from platform_serving import serving

from marquee_platform import ServiceContext, serve


async def test_an_in_flight_call_completes_within_the_grace_period() -> None:
    service = EchoService()
    async with serving(service.register, EchoSettings(shutdown_grace_seconds=5)) as running:
        call = running.unary("Slow")(b"0.5", timeout=10)
        await service.slow_started.wait()
        running.stop.set()
        assert await call == b"done"
        await running.task


async def test_force_stop_cancels_calls_still_running() -> None:
    service = EchoService()
    async with serving(service.register, EchoSettings(shutdown_grace_seconds=30)) as running:
        call = running.unary("Slow")(b"20", timeout=30)
        await service.slow_started.wait()
        running.stop.set()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        running.force_stop.set()
        with pytest.raises(grpc.aio.AioRpcError):
            await call
        await running.task
        assert time.monotonic() - started < 5


async def test_owned_tasks_are_cancelled_then_callbacks_run_in_reverse() -> None:
    events: list[str] = []
    crashed = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("task cancelled")
            raise

    async def crash() -> None:
        crashed.set()
        raise RuntimeError("background crash")

    def callback(name: str) -> Callable[[], Awaitable[None]]:
        async def cb() -> None:
            events.append(name)

        return cb

    async def register(server: grpc.aio.Server, context: ServiceContext) -> list[str]:
        context.spawn(forever(), name="forever")
        context.spawn(crash(), name="crash")  # logged, and does not stop the service
        context.on_shutdown(callback("first registered"))
        context.on_shutdown(callback("second registered"))
        return list(await EchoService().register(server, context))

    async with serving(register) as running:
        await crashed.wait()
        assert await running.unary("Echo")(b"ok", timeout=5) == b"ok"
    assert events == ["task cancelled", "second registered", "first registered"]


async def test_a_failing_registrar_stops_serve_and_cleans_up() -> None:
    cancelled = asyncio.Event()

    async def wait_for_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def register(server: grpc.aio.Server, context: ServiceContext) -> list[str]:
        context.spawn(wait_for_cancel(), name="waiter")
        await asyncio.sleep(0)
        raise ConnectionError("backend unreachable")

    with pytest.raises(ConnectionError):
        await serve("echo", EchoSettings(), register)
    assert cancelled.is_set()


async def test_stop_callbacks_run_before_the_drain_while_calls_still_run() -> None:
    service = EchoService()
    seen: list[str] = []

    async def register(server: grpc.aio.Server, context: ServiceContext) -> list[str]:
        async def on_stop() -> None:
            # The slow call is still in flight: nothing has drained yet.
            seen.append("stop" if not call.done() else "too late")

        async def on_shutdown() -> None:
            seen.append("shutdown")

        context.on_stop(on_stop)
        context.on_shutdown(on_shutdown)
        return list(await service.register(server, context))

    async with serving(register, EchoSettings(shutdown_grace_seconds=5)) as running:
        call = asyncio.ensure_future(running.unary("Slow")(b"0.5", timeout=10))
        await service.slow_started.wait()
        running.stop.set()
        assert await call == b"done"
        await running.task
    assert seen == ["stop", "shutdown"]
