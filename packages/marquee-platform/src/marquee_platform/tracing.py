"""OpenTelemetry tracing: one tracer provider per process, and a server span per call."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar, Token
from typing import Any, TypeAlias

import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

Context = grpc.aio.ServicerContext[Any, Any]
StartedSpan: TypeAlias = "tuple[Span, Token[otel_context.Context]] | Token[_CallIds | None]"
"""A started span and the token that restores the context it replaced; or, when
nothing is sampled, the token that restores the unsampled call before this one."""

# Probes and grpcurl would otherwise fill the traces with noise.
_UNTRACED_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)

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
            # Imported only here: the exporter and its protobuf encoders are ~60 ms
            # of start-up that a process exporting nothing does not need.
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _provider = TracerProvider(resource=resource)
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint)))
        else:
            _provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
        trace.set_tracer_provider(_provider)
    return _provider


class ServerSpans:
    """A SERVER span per call, with the W3C trace context the caller sent.

    Written here rather than taken from opentelemetry-instrumentation-grpc: its
    aio interceptor (a proxy around the servicer context, peer parsing, a
    Protocol-based filter) cost a quarter of a cheap RPC even with sampling
    off (docs/benchmarks.md, cache); this keeps what the suite uses, the span,
    its parent and the rpc.* attributes, at a fraction of that.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("marquee_platform")
        self._methods: dict[str, tuple[str, dict[str, str]]] = {}
        self._never_sampled = provider.sampler is ALWAYS_OFF
        self._ids = provider.id_generator
        self._textmap: object = None
        self._fields: frozenset[str] = frozenset()

    @staticmethod
    def traced(method: str) -> bool:
        """Health probes and reflection stay out of the traces."""
        return not method.startswith(_UNTRACED_PREFIXES)

    def start(self, method: str, context: Context) -> StartedSpan:
        """Start the call's span and make it current (for logs and outgoing calls)."""
        if self._never_sampled:
            return _UNSAMPLED_CALL.set(_CallIds(self, context))
        parent = self._caller_context(context)
        name, attributes = self._described(method)
        # start_span plus attach, not start_as_current_span: its two nested context
        # managers cost twice the span itself (~14 of ~22 us a call measured here).
        span = self._tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def end(started: StartedSpan, context: Context) -> None:
        """Record the call's status on the span, end it, and restore the previous context."""
        if isinstance(started, Token):
            # ValueError: a streaming handler's generator closed from another context
            # (the loop's finaliser of an abandoned one), which ends with it anyway.
            with contextlib.suppress(ValueError):
                _UNSAMPLED_CALL.reset(started)
            return
        span, token = started
        try:
            if span.is_recording():
                _record_status(span, context)
        finally:
            otel_context.detach(token)
            span.end()

    def _caller_context(self, context: Context) -> otel_context.Context:
        """The trace context the caller sent, if any.

        Most callers send none: picking out the metadata the propagator reads
        is far cheaper than running every propagator over each call's metadata.
        """
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:  # set_global_textmap may have replaced it
            self._textmap, self._fields = textmap, frozenset(textmap.fields)
        fields = self._fields
        carrier: dict[str, str | bytes] | None = None
        # A loop rather than a comprehension: no dict and no frame for the usual call,
        # whose only metadata is the user agent (measured: half of this method's cost).
        for key, value in context.invocation_metadata() or ():
            if key in fields:
                if carrier is None:
                    carrier = {}
                carrier[key] = value
        return propagate.extract(carrier) if carrier else otel_context.get_current()

    def _described(self, method: str) -> tuple[str, dict[str, str]]:
        """The span name and rpc.* attributes of a method, worked out once."""
        described = self._methods.get(method)
        if described is None:
            service, _, rpc = method.lstrip("/").partition("/")
            described = (
                method.lstrip("/"),
                {
                    "rpc.system": "grpc",
                    "rpc.service": service,
                    "rpc.method": rpc,
                },
            )
            self._methods[method] = described
        # A copy: the span keeps the dict it is given.
        return described[0], dict(described[1])


class _CallIds:
    """The trace context of a call nothing samples, worked out the first time it is read.

    The SDK, sampling nothing, would still start a non-recording span for each
    call and make it current: measured in the gateway at concurrency 64, a Get
    traced through it took 60-80 us more server CPU than one left untraced
    (~265 us). Most calls neither log nor call another service, so nothing
    reads their ids: a context variable holding this is all a call pays for,
    and the caller's trace context is read from the metadata, and the ids
    drawn, only when a log line asks (docs/benchmarks.md, auth). The ids are
    the SDK's: the caller's trace id (or a new one) and trace state, and a
    new span id, fixed at the first read.
    """

    __slots__ = ("_call", "_ids", "_spans")

    def __init__(self, spans: ServerSpans, call: Context) -> None:
        self._spans: ServerSpans | None = spans
        self._call = call
        self._ids = INVALID_SPAN_CONTEXT

    def span_context(self) -> SpanContext:
        spans = self._spans
        if spans is not None:
            parent = spans._caller_context(self._call)
            caller = trace.get_current_span(parent).get_span_context()
            ids = spans._ids
            self._ids = SpanContext(
                caller.trace_id if caller.is_valid else ids.generate_trace_id(),
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
                trace_state=caller.trace_state,
            )
            self._spans = None
        return self._ids


_UNSAMPLED_CALL: ContextVar[_CallIds | None] = ContextVar("marquee_unsampled_call", default=None)


def current_span_context() -> SpanContext:
    """The ids of the running call's span: the current span's, or the unsampled call's.

    INVALID_SPAN_CONTEXT outside a call.
    """
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        unsampled = _UNSAMPLED_CALL.get()
        if unsampled is not None:
            return unsampled.span_context()
    return span_context


def _record_status(span: Span, context: Context) -> None:
    # grpc.aio answers None until a handler sets a code: that is an OK answer.
    code: object = context.code()
    status = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", status.value[0])
    if status in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, f"{status.name}: {context.details() or ''}"))


# Codes that say the server failed (the others describe the request).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
