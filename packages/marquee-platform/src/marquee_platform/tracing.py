"""OpenTelemetry tracing: one tracer provider per process, and the gRPC server interceptor."""

from __future__ import annotations

import grpc.aio
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

# Probes and grpcurl would otherwise fill the traces with noise.
_UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")

_provider: TracerProvider | None = None


def configure_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install the process's tracer provider; later calls return the first one unchanged.

    OpenTelemetry allows the global provider to be set only once, so the first
    service configured in a process (the only one, outside tests) decides.
    Spans are exported over OTLP gRPC only when an endpoint is given.
    """
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        if otlp_endpoint:
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint)))
        trace.set_tracer_provider(_provider)
    return _provider


def tracing_interceptor(provider: TracerProvider) -> grpc.aio.ServerInterceptor:
    """A span per RPC, continuing the caller's trace from the request metadata."""
    untraced = filters.any_of(*(filters.service_name(name) for name in _UNTRACED_SERVICES))
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=filters.negate(untraced)
    )
    return interceptor
