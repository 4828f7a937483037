"""serve(): one gRPC service process from start to graceful stop; run_service(): its __main__."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import grpc
import grpc.aio
import structlog
import uvloop
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from marquee_platform.context import Registrar, ServiceContext
from marquee_platform.logging import configure_logging
from marquee_platform.metrics import MetricsServer, start_metrics_server
from marquee_platform.observed import ObservedServer, RpcObserver
from marquee_platform.settings import InvalidSettings, ServiceSettings, load_settings
from marquee_platform.tracing import ServerSpans, configure_tracing

EXIT_BAD_SETTINGS = 2
EXIT_FAILED = 1
FLUSH_TRACES_MILLIS = 5_000


@dataclass(frozen=True)
class ServerInfo:
    """The ports actually bound (settings may say 0); metrics_port is None when disabled."""

    grpc_port: int
    metrics_port: int | None


async def serve(
    name: str,
    settings: ServiceSettings,
    register: Registrar,
    *,
    started: Callable[[ServerInfo], None] | None = None,
    stop: asyncio.Event | None = None,
    force_stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set, then drain for up to shutdown_grace_seconds and clean up.

    Setting `force_stop` during the drain cancels the calls still running.
    """
    if stop is None:
        stop = asyncio.Event()
    if force_stop is None:
        force_stop = asyncio.Event()
    log = structlog.stdlib.get_logger("marquee_platform.server")
    tracer_provider = configure_tracing(name, settings.otlp_endpoint)
    # Every handler registered on it runs inside a span, the metrics and the error mapping.
    server = ObservedServer(grpc.aio.server(), RpcObserver(ServerSpans(tracer_provider)))
    health_servicer = health.aio.HealthServicer()
    context = ServiceContext(name, settings, structlog.stdlib.get_logger(name), health_servicer)
    metrics_server: MetricsServer | None = None
    try:
        if settings.metrics_port >= 0:
            metrics_server = start_metrics_server(settings.metrics_host, settings.metrics_port)
        services = list(await register(server, context))
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        grpc_port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
        await server.start()
        await context.mark_serving([*services, health.OVERALL_HEALTH])
        metrics_port = metrics_server.port if metrics_server else None
        log.info(
            "serving",
            grpc_address=f"{settings.grpc_host}:{grpc_port}",
            metrics_address=f"{settings.metrics_host}:{metrics_port}" if metrics_port else None,
            services=services,
        )
        if started is not None:
            started(ServerInfo(grpc_port=grpc_port, metrics_port=metrics_port))

        await stop.wait()
        log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
        await context.stopping()
        # Health first, so load balancers stop sending new calls while old ones drain.
        await health_servicer.enter_graceful_shutdown()
        await _drain(server, settings.shutdown_grace_seconds, force_stop)
    finally:
        await server.stop(None)  # no-op after a drain; cancels everything on an error path
        await context.close()
        if metrics_server is not None:
            # Its HTTP loop notices shutdown only at its next poll, up to half a second.
            await asyncio.to_thread(metrics_server.close)
        # Off the loop and bounded: an unreachable collector must not hang the exit.
        await asyncio.to_thread(tracer_provider.force_flush, FLUSH_TRACES_MILLIS)
    log.info("stopped")


async def _drain(server: grpc.aio.Server, grace: float, force_stop: asyncio.Event) -> None:
    graceful = asyncio.create_task(server.stop(grace))
    forced = asyncio.create_task(force_stop.wait())
    await asyncio.wait([graceful, forced], return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    if not graceful.done():
        await server.stop(None)
    await graceful


def run_service(name: str, settings_cls: type[ServiceSettings], register: Registrar) -> NoReturn:
    """The whole __main__ of a service: settings, logging, uvloop, signals, serve, exit code.

    A bad setting prints one line on stderr and exits 2; a clean shutdown exits 0.
    """
    try:
        settings = load_settings(settings_cls)
    except InvalidSettings as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_SETTINGS)
    configure_logging(name, settings.log_level, settings.log_format)
    try:
        uvloop.run(_serve_until_signalled(name, settings, register))
    except Exception:
        structlog.stdlib.get_logger("marquee_platform.server").exception("service failed")
        sys.exit(EXIT_FAILED)
    sys.exit(0)


async def _serve_until_signalled(name: str, settings: ServiceSettings, register: Registrar) -> None:
    stop = asyncio.Event()
    force_stop = asyncio.Event()

    def on_signal() -> None:
        # The first signal drains gracefully; a second one stops without waiting.
        (force_stop if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    await serve(
        name, settings, register, stop=stop, force_stop=force_stop, started=_freeze_startup_heap
    )


def _freeze_startup_heap(_info: ServerInfo) -> None:
    """Keep what start-up built (modules, descriptors, settings) out of later GC passes.

    Measured in the cache gateway at concurrency 64: each full collection walked
    that heap for ~40 ms with the loop stopped, a 40 ms gap in which no call
    completed; after the freeze a full collection took ~0.5 ms. Frozen objects
    are still freed by reference counting; only one caught in a reference cycle
    later would stay, and what start-up builds lives as long as the process.
    """
    gc.collect()
    gc.freeze()
