"""Shared by the auth tests (a unique module name: tests dirs share sys.path)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_auth.app import register
from marquee_auth.settings import AuthSettings
from marquee_testing.inprocess import RunningService, serving

if TYPE_CHECKING:
    from marquee.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub

PASSWORD = "correct horse battery staple"
_names = itertools.count()

# Cheap argon2 for tests that are not about hashing: 8 MiB, one pass.
FAST_HASHING: dict[str, Any] = {"argon2_memory_kib": 8 * 1024, "argon2_time_cost": 1}


def auth_settings(database_url: str, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_port": -1,
        "database_url": database_url,
        "coordinator_endpoints": [],
        "shutdown_grace_seconds": 2,
        **FAST_HASHING,
        **overrides,
    }
    return AuthSettings(**values)


@contextlib.asynccontextmanager
async def auth_service(database_url: str, **overrides: Any) -> AsyncIterator[RunningService]:
    async with serving("auth", auth_settings(database_url, **overrides), register) as running:
        yield running


def stub(service: RunningService) -> AuthServiceAsyncStub:
    return auth_pb2_grpc.AuthServiceStub(service.channel)


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_names)}"


async def register_user(
    auth: AuthServiceAsyncStub, name: str | None = None, password: str = PASSWORD
) -> auth_pb2.User:
    name = name or unique_name()
    response = await auth.Register(
        auth_pb2.RegisterRequest(username=name, email=f"{name}@example.com", password=password),
        timeout=30,
    )
    return response.user


async def login(auth: AuthServiceAsyncStub, name: str, password: str = PASSWORD) -> auth_pb2.Tokens:
    response = await auth.Login(auth_pb2.LoginRequest(username=name, password=password), timeout=30)
    assert response.WhichOneof("result") == "tokens"
    return response.tokens


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT carries a google.rpc.Status"
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            return [v.field for v in bad_request.field_violations]
    return []


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> int | None:
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return int(retry.retry_delay.seconds)
    return None
