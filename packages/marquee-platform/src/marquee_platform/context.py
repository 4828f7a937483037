"""What a service's registrar gets: its settings, a logger, owned tasks, shutdown hooks, health."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2

from marquee_platform.settings import ServiceSettings


class ServiceContext:
    """Handed to a registrar; lives as long as the server."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        log: structlog.stdlib.BoundLogger,
        health_servicer: health.aio.HealthServicer,
    ) -> None:
        self.name = name
        self.settings = settings
        self.log = log
        self._health = health_servicer
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shutdown_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._stop_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._health_set_explicitly: set[str] = set()
        # host:port the server listens on, once bound (after the registrar ran): for
        # parts of a service that call their own server, such as a dev console.
        self.grpc_address: str | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background until it ends or the service shuts down.

        The task is cancelled and awaited on shutdown; if it fails, the error is logged.
        """
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def on_shutdown(self, cb: Callable[[], Awaitable[None]]) -> None:
        """Run `cb` once the gRPC server has drained; callbacks run last-registered first."""
        self._shutdown_callbacks.append(cb)

    def on_stop(self, cb: Callable[[], Awaitable[None]]) -> None:
        """Run `cb` as soon as the server is asked to stop, before it drains.

        For work that makes the drain short, e.g. handing leadership over or
        ending long-lived streams; callbacks run in registration order and a
        failing one is logged without stopping the others.
        """
        self._stop_callbacks.append(cb)

    async def stopping(self) -> None:
        """Run the on_stop callbacks (called by serve() when the stop signal arrives)."""
        callbacks, self._stop_callbacks = self._stop_callbacks, []
        for cb in callbacks:
            try:
                await cb()
            except Exception:
                self.log.exception("stop callback failed", callback=getattr(cb, "__name__", cb))

    def set_serving(self, service: str, serving: bool) -> None:
        """Report one service name as (not) serving on grpc.health.v1; "" is the whole server."""
        self._health_set_explicitly.add(service)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # Updates run as tasks in call order, so the last call wins.
        self.spawn(self._health.set(service, status), name=f"health-{service or 'server'}")

    async def mark_serving(self, services: Sequence[str]) -> None:
        """Report SERVING for every service the registrar has not reported on itself."""
        for service in services:
            if service not in self._health_set_explicitly:
                await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        """Cancel and await owned tasks, then run the shutdown callbacks in reverse order."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cb in reversed(self._shutdown_callbacks):
            try:
                await cb()
            except Exception:
                self.log.exception("shutdown callback failed", callback=getattr(cb, "__name__", cb))
        self._shutdown_callbacks.clear()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error(
                "background task failed", task=task.get_name(), exc_info=task.exception()
            )


Registrar = Callable[[grpc.aio.Server, ServiceContext], Awaitable[Sequence[str]]]
"""Adds a service's servicers to the server and returns their full names."""
