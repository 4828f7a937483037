"""OpenTelemetry tracing: one tracer provider per process, and the gRPC server interceptor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc.aio
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

# Probes and grpcurl would otherwise fill the traces with noise.
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")

_provider: TracerProvider | None = None


def configure_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install the process's tracer provider; later calls return the first one unchanged.

    OpenTelemetry allows the global provider to be set only once, so the first
    service configured in a process (the only one, outside tests) decides.
    Spans are exported over OTLP gRPC only when an endpoint is given. Without
    one, nothing is sampled: recording spans nobody collects costs most of a
    cheap RPC, while unsampled spans still carry trace ids for the logs and
    for propagation to the services we call.
    """
    global _provider
    if _provider is None:
        resource = Resource.create({SERVICE_NAME: service})
        if otlp_endpoint:
            # The sampler then comes from OTEL_TRACES_SAMPLER, by default every trace.
            _provider = TracerProvider(resource=resource)
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint)))
        else:
            _provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
        trace.set_tracer_provider(_provider)
    return _provider


def tracing_interceptor(provider: TracerProvider) -> grpc.aio.ServerInterceptor:
    """A span per RPC, continuing the caller's trace from the request metadata."""
    inner: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    return _SkipUntraced(inner)


class _SkipUntraced(grpc.aio.ServerInterceptor):
    """Leaves probes and reflection out of tracing.

    OpenTelemetry's own `filters` do the same through an isinstance check
    against a typing.Protocol on every call (~25 µs); a prefix test is free.
    """

    def __init__(self, inner: grpc.aio.ServerInterceptor) -> None:
        self._inner = inner

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler_call_details.method.startswith(_UNTRACED_PREFIXES):
            return await continuation(handler_call_details)
        return await self._inner.intercept_service(continuation, handler_call_details)
