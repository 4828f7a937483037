"""Auth in process with and without its job runtime, while the coordinator is not up yet."""

from __future__ import annotations

import socket
import time

import asyncpg
import grpc
from pydantic import PostgresDsn

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc
from marquee_auth.app import register
from marquee_auth.settings import AuthSettings
from marquee_testing.inprocess import serving


def unused_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def assert_serving(channel: grpc.aio.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    jwks = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
    assert jwks.keys


async def test_without_jobs_auth_serves(scratch_database_url: str) -> None:
    settings = AuthSettings(
        metrics_port=-1,
        database_url=PostgresDsn(scratch_database_url),
        coordinator_endpoints=[],
    )
    async with serving("auth", settings, register) as service:
        await assert_serving(service.channel)


async def test_with_the_coordinator_down_auth_migrates_serves_and_stops_promptly(
    scratch_database_url: str,
) -> None:
    # `marquee up` starts auth and the coordinator nodes together: auth must not
    # wait for a leader to serve, and its cleanup job simply waits for the lease.
    settings = AuthSettings(
        metrics_port=-1,
        database_url=PostgresDsn(scratch_database_url),
        coordinator_endpoints=[unused_address()],
        shutdown_grace_seconds=2,
    )
    assert settings.run_jobs
    async with serving("auth", settings, register) as service:
        await assert_serving(service.channel)
        conn = await asyncpg.connect(scratch_database_url)
        try:
            migrated = await conn.fetchrow(
                "SELECT version, dirty FROM marquee_schema_migrations WHERE name = 'jobs'"
            )
        finally:
            await conn.close()
        assert migrated is not None
        assert migrated["version"] >= 1
        assert not migrated["dirty"]
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3
