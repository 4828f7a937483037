"""AroundRpcInterceptor builds a method's wrapper once, and anew if grpc's handler changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from marquee_platform.interceptors import AroundRpcInterceptor, Context


class Counting(AroundRpcInterceptor):
    def __init__(self) -> None:
        super().__init__()
        self.entered = 0

    @asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        self.entered += 1
        yield


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def echo(request: Any, context: Any) -> Any:
    return request


async def test_a_methods_wrapper_is_reused_until_its_handler_changes() -> None:
    interceptor = Counting()
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(echo)

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    first = await interceptor.intercept_service(continuation, Details("/s/M"))
    again = await interceptor.intercept_service(continuation, Details("/s/M"))
    assert first is not None
    assert again is first
    behaviour: Any = first.unary_unary
    assert await behaviour(b"x", None) == b"x"
    assert interceptor.entered == 1

    other = await interceptor.intercept_service(continuation, Details("/s/Other"))
    assert other is not first
    handler = grpc.unary_unary_rpc_method_handler(echo)
    replaced = await interceptor.intercept_service(continuation, Details("/s/M"))
    assert replaced is not first

    async def unknown(details: grpc.HandlerCallDetails) -> Any:
        return None

    assert await interceptor.intercept_service(unknown, Details("/s/Nope")) is None
