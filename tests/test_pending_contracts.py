"""Every RPC not built yet answers UNIMPLEMENTED and says what is missing.

This is the one placeholder the suite allows, so the test walks every method
of every service each registrar exposes, with the method's streaming shape.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor

from marquee_platform import Registrar, ServiceSettings
from marquee_testing.inprocess import serving

# (name, settings class, registrar, the services it still serves as placeholders).
SERVICES: list[tuple[str, type[ServiceSettings], Registrar, tuple[str, ...]]] = []
# Registrars that need a database to start at all.
NEEDS_DATABASE: set[str] = set()


async def _one_empty_message() -> AsyncIterator[bytes]:
    yield b""


def _raw(message: bytes) -> bytes:
    return message


# Each call gets its own deadline: an UNIMPLEMENTED answer is immediate, so a call
# still open after this means a handler hangs, and the test must fail, not wait.
CALL_TIMEOUT = 10.0


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor) -> grpc.aio.AioRpcError:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming and method.server_streaming:
            bidi = channel.stream_stream(path, _raw, _raw)
            async for _ in bidi(_one_empty_message(), timeout=CALL_TIMEOUT):
                pass
        elif method.client_streaming:
            upload = channel.stream_unary(path, _raw, _raw)
            await upload(_one_empty_message(), timeout=CALL_TIMEOUT)
        elif method.server_streaming:
            download = channel.unary_stream(path, _raw, _raw)
            async for _ in download(b"", timeout=CALL_TIMEOUT):
                pass
        else:
            await channel.unary_unary(path, _raw, _raw)(b"", timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError(f"{path} answered without an error")


async def _call_bounded(
    channel: grpc.aio.Channel, method: MethodDescriptor
) -> grpc.aio.AioRpcError:
    # The call's deadline covers the RPC; this also bounds the stream's teardown
    # and anything the client does outside the deadline.
    async with asyncio.timeout(CALL_TIMEOUT + 5):
        return await _call(channel, method)


@pytest.mark.parametrize(
    ("name", "settings_cls", "register", "pending"), SERVICES, ids=[s[0] for s in SERVICES]
)
async def test_every_pending_rpc_answers_unimplemented_naming_what_is_missing(
    name: str,
    settings_cls: type[ServiceSettings],
    register: Registrar,
    pending: tuple[str, ...],
    scratch_database_url: str,
) -> None:
    extra: dict[str, Any] = {"database_url": scratch_database_url} if name in NEEDS_DATABASE else {}
    settings = settings_cls(grpc_port=0, metrics_port=-1, **extra)
    async with serving(name, settings, register) as server:
        assert set(pending) <= set(server.services), f"{name} does not serve {pending}"
        pool = descriptor_pool.Default()
        for service_name in pending:
            service = pool.FindServiceByName(service_name)
            assert len(service.methods) > 0
            for method in service.methods:
                error = await _call_bounded(server.channel, method)
                assert error.code() == grpc.StatusCode.UNIMPLEMENTED, (method.full_name, error)
                details = error.details() or ""
                assert f"{service_name}/{method.name} is not implemented yet" in details
                assert "arrive with" in details
