"""The platform's work around every RPC, wrapped around each handler as it is registered.

Every call gets a server span, the handled-call metrics and the error
mapping. These used to be three grpc.aio interceptors. With interceptors,
grpc.aio runs their chain as coroutines on every call just to find the
handler, then a wrapper per interceptor: counted with callgrind, a no-op
Check cost 1.37x the instructions of a bare grpc.aio server's. One wrapper
per method, built when the servicer registers, and generic handlers only
(see add_registered_method_handlers) brought it to 1.04x
(`make bench-instructions`, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from marquee_platform import errors
from marquee_platform.encoded import passing_encoded
from marquee_platform.error_mapping import abort_with, service_error_for
from marquee_platform.metrics import MethodMetrics
from marquee_platform.tracing import Context, ServerSpans, StartedSpan

# A string: grpc's classes are generic only in its type stubs.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Behaviour = Callable[..., Any]
Deserializer = Callable[[bytes], Any]

# A handler cancelled for its deadline sees up to a few ms left by its own clock
# (6.5 ms once in 18 tries here): grpc's timer and time.time() disagree that much.
_DEADLINE_SLACK_SECONDS = 0.05


class RpcObserver:
    """Builds the wrapped handler of a method: span, metrics and error mapping in one layer.

    It also reads the request messages: each is checked against
    `max_receive_bytes` (None: no limit here) and decoded, so that a message
    too large or not decoding ends its call as RESOURCE_EXHAUSTED or
    INVALID_ARGUMENT, counted and traced like any other call. A response a
    handler encoded itself (encoded.pre_encoded) is sent as the bytes it is.
    """

    def __init__(self, spans: ServerSpans | None, max_receive_bytes: int | None = None) -> None:
        self._spans = spans
        self._max_receive_bytes = max_receive_bytes

    def wrap(self, method: str, handler: Handler) -> Handler:
        behaviour: Any
        if handler.request_streaming and handler.response_streaming:
            behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            behaviour, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            behaviour, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        spans = self._spans if self._spans is not None and self._spans.traced(method) else None
        call = _Call(method, spans)
        request = _Request(handler.request_deserializer, self._max_receive_bytes)
        # A single request arrives as bytes and the wrapper decodes it: grpc would
        # decode it before calling the wrapper, and a failure there would end the
        # call as UNKNOWN "Unexpected <class 'DecodeError'>", uncounted. A stream of
        # requests is decoded by grpc as the handler reads it, inside the wrapper,
        # through request.reader().
        raw = not handler.request_streaming
        deserializer = None if raw else request.reader()
        wrap_calls = call.streaming if handler.response_streaming else call.unary
        wrapped = wrap_calls(behaviour, request, raw=raw)
        return factory(
            wrapped,
            request_deserializer=deserializer,
            response_serializer=passing_encoded(handler.response_serializer),
        )


class _Request:
    """A method's request messages: their size limit, how they decode, the errors for both."""

    __slots__ = ("decode", "max_bytes", "type_name")

    def __init__(self, deserializer: Deserializer | None, max_bytes: int | None) -> None:
        self.decode = deserializer
        self.max_bytes = sys.maxsize if max_bytes is None else max_bytes
        # A generated FromString is bound to its message class, which names the type.
        owner = getattr(deserializer, "__self__", None)
        self.type_name: str | None = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", None)

    def too_large(self, size: int) -> errors.ResourceExhausted:
        return errors.ResourceExhausted(
            f"the request message is {size} bytes, over this server's limit of"
            f" {self.max_bytes} bytes"
        )

    def undecodable(self) -> errors.InvalidArgument:
        expected = f"a {self.type_name} message" if self.type_name else "the expected message"
        return errors.InvalidArgument(f"the request does not decode as {expected}")

    def reader(self) -> Deserializer | None:
        """grpc's deserializer for a stream of requests: checks, then decodes, each one."""
        decode, max_bytes = self.decode, self.max_bytes
        if decode is None and max_bytes == sys.maxsize:
            return None

        def read(raw: bytes) -> Any:
            if len(raw) > max_bytes:
                raise self.too_large(len(raw))
            if decode is None:
                return raw
            try:
                return decode(raw)
            except Exception as exc:
                raise self.undecodable() from exc

        return read


class _Started:
    """One call in progress: when it began, its span, and the status it ends with so far."""

    __slots__ = ("began", "code", "span")

    def __init__(self, span: StartedSpan | None) -> None:
        self.span = span
        self.code = grpc.StatusCode.UNKNOWN
        self.began = time.perf_counter()


class _Call:
    """What one method's wrapper does around each of its calls."""

    def __init__(self, method: str, spans: ServerSpans | None) -> None:
        self.method = method
        self.spans = spans
        self.metrics = MethodMetrics(method)

    # With raw=True the wrapper gets the request's bytes and checks and decodes
    # them itself, inline, since this runs on every call.

    def unary(self, behaviour: Behaviour, request: _Request, *, raw: bool) -> Behaviour:
        decode, max_bytes = request.decode, request.max_bytes

        async def unary_response(message: Any, context: Context) -> Any:
            call = self.begin(context)
            try:
                if raw:
                    if len(message) > max_bytes:
                        raise request.too_large(len(message))
                    if decode is not None:
                        try:
                            message = decode(message)
                        except Exception as exc:
                            raise request.undecodable() from exc
                response = await behaviour(message, context)
                call.code = _code_set_on(context, default=grpc.StatusCode.OK)
                return response
            except BaseException as exc:
                await self.fail(call, context, exc)
            finally:
                self.finish(call, context)

        return unary_response

    def streaming(self, behaviour: Behaviour, request: _Request, *, raw: bool) -> Behaviour:
        decode, max_bytes = request.decode, request.max_bytes

        async def stream_response(message: Any, context: Context) -> AsyncIterator[Any]:
            call = self.begin(context)
            try:
                if raw:
                    if len(message) > max_bytes:
                        raise request.too_large(len(message))
                    if decode is not None:
                        try:
                            message = decode(message)
                        except Exception as exc:
                            raise request.undecodable() from exc
                responses = behaviour(message, context)
                # A handler may write through context.write (grpc's health Watch does)
                # instead of yielding; grpc still gets an async generator from us.
                if hasattr(responses, "__aiter__"):
                    async for response in responses:
                        yield response
                else:
                    await responses
                call.code = _code_set_on(context, default=grpc.StatusCode.OK)
            except BaseException as exc:
                await self.fail(call, context, exc)
            finally:
                self.finish(call, context)

        return stream_response

    def begin(self, context: Context) -> _Started:
        return _Started(self.spans.start(self.method, context) if self.spans else None)

    async def fail(self, call: _Started, context: Context, exc: BaseException) -> NoReturn:
        """End the call for `exc`: an Exception becomes its gRPC status (service_error_for).

        context.abort (grpc.aio.AbortError), cancellation and the like pass
        through untouched; only the status they end with is noted (a
        cancellation past the call's deadline as DEADLINE_EXCEEDED).
        """
        if isinstance(exc, grpc.aio.AbortError):
            call.code = _code_set_on(context, default=grpc.StatusCode.UNKNOWN)
        elif isinstance(exc, Exception):
            error = service_error_for(self.method, exc)
            call.code = error.code
            await abort_with(context, error)  # raises AbortError
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            # grpc cancels the handler both when the caller goes away and when the
            # call's deadline passes: only the clock tells them apart.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining < _DEADLINE_SLACK_SECONDS
            call.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        raise exc

    def finish(self, call: _Started, context: Context) -> None:
        self.metrics.record(call.code, time.perf_counter() - call.began)
        if call.span is not None:
            ServerSpans.end(call.span, context)


def _code_set_on(context: Context, default: grpc.StatusCode) -> grpc.StatusCode:
    # grpc.aio answers None until the handler sets a code, whatever the stubs say.
    code: object = context.code()
    return code if isinstance(code, grpc.StatusCode) else default


class _MethodOnly(grpc.HandlerCallDetails):
    """Call details naming only a method, to ask a generic handler whether it serves it."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class _ObservedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose handlers come back wrapped, each built once per method."""

    def __init__(self, inner: grpc.GenericRpcHandler, observer: RpcObserver) -> None:
        self._inner = inner
        self._observer = observer
        # method -> (the handler the inner one gave, our wrapper of it)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = handler, self._observer.wrap(method, handler)
            self._wrapped[method] = wrapped
        return wrapped[1]


class ObservedServer(grpc.aio.Server):
    """A grpc.aio server whose every handler runs under RpcObserver.

    Servicers register on it as on any server: the generated add_*_to_server
    functions call the two add_*_handlers methods below.
    """

    def __init__(self, server: grpc.aio.Server, observer: RpcObserver) -> None:
        self._server = server
        self._observer = observer
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        handlers = list(generic_rpc_handlers)
        self._generic += handlers
        self._server.add_generic_rpc_handlers(
            [_ObservedGenericHandler(h, self._observer) for h in handlers]
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        # Served through a generic handler instead. grpc.aio's registered-method
        # path costs more per call, and more with every method registered:
        # counted with callgrind on a no-op Check, 310k instructions with only
        # Health registered, 349k with the cache's 7 methods added, and 291k in
        # both cases when every service goes through generic handlers.
        # The generated add_*_to_server functions have added a generic handler
        # with the same methods just before: only methods no handler serves yet
        # are added, so a call's lookup never passes through a duplicate.
        missing = {
            name: handler
            for name, handler in method_handlers.items()
            if not self._serves(f"/{service_name}/{name}")
        }
        if missing:
            self.add_generic_rpc_handlers(
                [grpc.method_handlers_generic_handler(service_name, missing)]
            )

    def _serves(self, method: str) -> bool:
        details = _MethodOnly(method)
        return any(h.service(details) is not None for h in self._generic)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (grpc's signature)
        return await self._server.wait_for_termination(timeout)
