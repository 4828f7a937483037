"""Prometheus metrics for gRPC servers and the HTTP endpoint that exposes them."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

import grpc
import prometheus_client

# Each counter would otherwise also export a `_created` series: a second name
# for the same metric, which the scrape lint (P-2) forbids.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Module-level so that serving twice in one process never registers them twice.
HANDLED = prometheus_client.Counter(
    "marquee_grpc_server_handled",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = prometheus_client.Histogram(
    "marquee_grpc_server_handling_seconds",
    "Time from the start of an RPC to its status, streams included.",
    ["grpc_service", "grpc_method"],
)


class MethodMetrics:
    """The handled-call counter and latency histogram of one method.

    labels() takes a lock and a dict lookup on every call (~3 us each here),
    so a method's series are looked up once and kept.
    """

    def __init__(self, method: str) -> None:
        self._service, _, self._name = method.lstrip("/").partition("/")
        self._timing = HANDLING_SECONDS.labels(self._service, self._name)
        self._handled: dict[grpc.StatusCode, prometheus_client.Counter] = {}

    def record(self, code: grpc.StatusCode, seconds: float) -> None:
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = HANDLED.labels(self._service, self._name, code.name)
        handled.inc()
        self._timing.observe(seconds)


@dataclass
class MetricsServer:
    """The /metrics HTTP server running on its own daemon thread."""

    port: int
    _server: WSGIServer
    _thread: Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_server(host: str, port: int) -> MetricsServer:
    """Serve the default registry on host:port (0 picks a free port)."""
    server, thread = prometheus_client.start_http_server(port, addr=host)
    return MetricsServer(server.server_port, server, thread)
