"""The trace context of a call when nothing is sampled: ids for its log lines, read lazily."""

from __future__ import annotations

import contextvars
from typing import cast

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from marquee_platform.tracing import Context, ServerSpans, current_span_context

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class FakeCall:
    """A servicer context with metadata, counting how often it is read."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.metadata = (("user-agent", "grpc-python-asyncio"), *metadata)
        self.reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        self.reads += 1
        return self.metadata


def spans() -> ServerSpans:
    return ServerSpans(TracerProvider(sampler=ALWAYS_OFF))


def served(spans: ServerSpans, call: FakeCall, read: int = 1) -> list[trace.SpanContext]:
    """The ids `read` log lines of a call would carry, each read inside the call."""

    def serve() -> list[trace.SpanContext]:
        started = spans.start("/test.Service/Method", cast(Context, call))
        try:
            return [current_span_context() for _ in range(read)]
        finally:
            ServerSpans.end(started, cast(Context, call))

    return contextvars.copy_context().run(serve)


def test_a_call_has_one_set_of_ids_and_none_outside_it() -> None:
    assert not current_span_context().is_valid
    first, again = served(spans(), FakeCall(), read=2)
    assert first.is_valid
    assert not first.trace_flags.sampled
    assert not first.is_remote
    assert again is first  # the same ids at every read
    assert not current_span_context().is_valid  # end() restored the state before


def test_each_call_gets_its_own_trace() -> None:
    server = spans()
    [one], [two] = served(server, FakeCall()), served(server, FakeCall())
    assert one.trace_id != two.trace_id
    assert one.span_id != two.span_id


def test_the_callers_trace_is_continued_with_a_new_span() -> None:
    traceparent = ("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    [ids] = served(spans(), FakeCall(traceparent, ("tracestate", "vendor=value")))
    assert trace.format_trace_id(ids.trace_id) == CALLER_TRACE
    assert trace.format_span_id(ids.span_id) != CALLER_SPAN
    assert ids.trace_state.get("vendor") == "value"
    assert not ids.is_remote


def test_a_call_nobody_asks_about_never_reads_its_metadata() -> None:
    call = FakeCall(("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
    served(spans(), call, read=0)
    assert call.reads == 0
    served(spans(), call, read=3)
    assert call.reads == 1


def test_ending_a_call_from_another_context_is_harmless() -> None:
    # What the loop's finaliser does to a streaming handler's abandoned generator.
    server, call = spans(), FakeCall()
    started = contextvars.copy_context().run(
        server.start, "/test.Service/Stream", cast(Context, call)
    )
    ServerSpans.end(started, cast(Context, call))
    assert not current_span_context().is_valid
