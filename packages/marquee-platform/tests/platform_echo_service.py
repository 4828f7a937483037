"""A fake service for the platform tests: test.v1.EchoService over raw bytes.

Also runnable as a script (`python platform_echo_service.py`) through run_service,
with settings from MARQUEE_ECHO_* variables.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import grpc.aio
import pydantic
from pydantic_settings import SettingsConfigDict

from marquee_platform import ServiceContext, ServiceSettings, errors, run_service

SERVICE = "test.v1.EchoService"
LEADER = "10.0.0.7:50051"

Context = grpc.aio.ServicerContext[bytes, bytes]


class EchoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_ECHO_")


class Greeting(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)
    count: int = pydantic.Field(ge=1)


class EchoService:
    """Handlers that succeed, fail in each mapped way, stream and take their time."""

    def __init__(self) -> None:
        self.slow_started = asyncio.Event()
        self._context: ServiceContext | None = None

    @property
    def context(self) -> ServiceContext:
        assert self._context is not None, "not registered yet"
        return self._context

    async def register(self, server: grpc.aio.Server, context: ServiceContext) -> Sequence[str]:
        self._context = context
        unary = grpc.unary_unary_rpc_method_handler
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Echo": unary(self.echo),
            "Invalid": unary(self.invalid),
            "Validate": unary(self.validate),
            "Crash": unary(self.crash),
            "Pending": unary(self.pending),
            "Leader": unary(self.leader),
            "Abort": unary(self.abort),
            "Slow": unary(self.slow),
            "Stream": grpc.unary_stream_rpc_method_handler(self.stream),
            "StreamCrash": grpc.unary_stream_rpc_method_handler(self.stream_crash),
            "Collect": grpc.stream_unary_rpc_method_handler(self.collect),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        return [SERVICE]

    async def echo(self, request: bytes, context: Context) -> bytes:
        self.context.log.info("echo called", size=len(request), gc_frozen=gc.get_freeze_count())
        return request

    async def invalid(self, request: bytes, context: Context) -> bytes:
        raise errors.InvalidArgument("key is empty", [("key", "must not be empty")])

    async def validate(self, request: bytes, context: Context) -> bytes:
        greeting = Greeting.model_validate_json(request)
        return greeting.name.encode()

    async def crash(self, request: bytes, context: Context) -> bytes:
        raise RuntimeError("secret internals")

    async def pending(self, request: bytes, context: Context) -> bytes:
        errors.unimplemented("EchoService.Pending", issue="echo")

    async def leader(self, request: bytes, context: Context) -> bytes:
        raise errors.FailedPrecondition("not the leader", metadata=[("x-leader", LEADER)])

    async def abort(self, request: bytes, context: Context) -> bytes:
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "aborted by the handler")

    async def slow(self, request: bytes, context: Context) -> bytes:
        self.slow_started.set()
        await asyncio.sleep(float(request))
        return b"done"

    async def stream(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            yield str(i).encode()

    async def stream_crash(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("broke mid-stream")

    async def collect(self, requests: AsyncIterator[bytes], context: Context) -> bytes:
        return b"".join([r async for r in requests])

    async def chat(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        async for request in requests:
            if request == b"bad":
                raise errors.InvalidArgument("bad message")
            yield request.upper()


async def register_for_script(server: grpc.aio.Server, context: ServiceContext) -> Sequence[str]:
    # Shows that third-party (stdlib) loggers come out as JSON too.
    logging.getLogger("some.library").warning("stdlib logger says hello")
    return await EchoService().register(server, context)


if __name__ == "__main__":
    run_service("echo", EchoSettings, register_for_script)
