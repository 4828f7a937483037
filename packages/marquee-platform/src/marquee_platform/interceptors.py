"""A base for server interceptors that run code around every RPC, whatever its shape."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc
import grpc.aio

Context = grpc.aio.ServicerContext[Any, Any]
# A string: grpc's classes are generic only in its type stubs.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class AroundRpcInterceptor(grpc.aio.ServerInterceptor, abc.ABC):
    """Wraps each call of every method in the async context manager from `around`.

    Unary and streaming behaviours are wrapped alike; a response stream is
    always handed back to grpc as an async generator, even when the handler
    writes through `context.write` (as grpc's health Watch does), so outer
    interceptors that iterate responses keep working.
    """

    def __init__(self) -> None:
        # method -> (the handler grpc gave, our wrapper of it)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    @abc.abstractmethod
    def around(self, method: str, context: Context) -> AbstractAsyncContextManager[None]:
        """Entered before the handler runs, exited (with its exception, if any) after."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        # grpc hands back the same handler object for a method on every call (and so
        # does each inner interceptor, thanks to this), so its wrapper is built once.
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = handler, self._wrap(handler, method)
            self._wrapped[method] = wrapped
        return wrapped[1]

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        around = self.around

        async def unary_response(request: Any, context: Context) -> Any:
            async with around(method, context):
                return await behavior(request, context)

        async def stream_response(request: Any, context: Context) -> AsyncIterator[Any]:
            async with around(method, context):
                responses = behavior(request, context)
                if hasattr(responses, "__aiter__"):
                    async for response in responses:
                        yield response
                else:
                    await responses

        behavior: Any
        if handler.request_streaming and handler.response_streaming:
            behavior, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
        elif handler.request_streaming:
            behavior, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        elif handler.response_streaming:
            behavior, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            behavior, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        return factory(
            stream_response if handler.response_streaming else unary_response,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
