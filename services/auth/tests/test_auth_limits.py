"""Attempt limits via the cache's limiter: per account, per source, shared, with Redis down."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from auth_support import auth_service, register_user, retry_delay_seconds, stub, unique_name

from marquee.auth.v1 import auth_pb2
from marquee_auth.attempt_limits import source_of
from marquee_localservers import RedisServer
from marquee_testing.inprocess import RunningService


def own_keys() -> str:
    """A Redis key prefix per test: the session's Redis is shared."""
    return f"ratelimit:{unique_name('test')}:"


async def attempt(service: RunningService, username: str) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub(service).Login(
            auth_pb2.LoginRequest(username=username, password="wrong password"), timeout=30
        )
    error = raised.value
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert "too many login attempts" in (error.details() or "")
        delay = retry_delay_seconds(error)
        assert delay is not None
        assert delay >= 1
    return error.code()


UNAUTH, EXHAUSTED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_login_attempts_per_account_are_shared_by_every_instance(
    scratch_database_url: str, redis_url: str
) -> None:
    limits = {
        "redis_url": redis_url,
        "attempt_key_prefix": own_keys(),
        "login_attempts_per_account": 3,
        "lockout_threshold": 100,
    }
    async with (
        auth_service(scratch_database_url, **limits) as first,
        auth_service(scratch_database_url, **limits) as second,
    ):
        name = unique_name("limited")
        await register_user(stub(first), name)
        outcomes = [
            await attempt(first, name),
            await attempt(second, name.upper()),  # the same account, any case
            await attempt(first, name),
            await attempt(second, name),
        ]
        assert outcomes == [UNAUTH, UNAUTH, UNAUTH, EXHAUSTED]
        assert await attempt(first, unique_name("other")) == UNAUTH, "other accounts go on"


async def test_login_attempts_per_source(scratch_database_url: str, redis_url: str) -> None:
    async with auth_service(
        scratch_database_url,
        redis_url=redis_url,
        attempt_key_prefix=own_keys(),
        login_attempts_per_source=3,
    ) as service:
        outcomes = [await attempt(service, unique_name("spray")) for _ in range(4)]
        assert outcomes == [UNAUTH, UNAUTH, UNAUTH, EXHAUSTED]


@pytest.mark.timeout(120)
async def test_with_redis_down_attempts_stay_limited(
    scratch_database_url: str, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        async with auth_service(
            scratch_database_url,
            redis_url=redis.url,
            login_attempts_per_account=2,
            lockout_threshold=100,
        ) as service:
            name = unique_name("outage")
            await register_user(stub(service), name)
            redis.stop()
            outcomes = [await attempt(service, name) for _ in range(3)]
            assert outcomes == [UNAUTH, UNAUTH, EXHAUSTED]
    finally:
        redis.stop()


async def test_without_redis_each_instance_limits_locally(scratch_database_url: str) -> None:
    async with auth_service(
        scratch_database_url, login_attempts_per_account=2, lockout_threshold=100
    ) as service:
        name = unique_name("local")
        outcomes = [await attempt(service, name) for _ in range(3)]
        assert outcomes == [UNAUTH, UNAUTH, EXHAUSTED]


async def test_mfa_attempts_per_source(scratch_database_url: str) -> None:
    async with auth_service(scratch_database_url, mfa_attempts_per_source=2) as service:
        codes = []
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub(service).VerifyTotp(
                    auth_pb2.VerifyTotpRequest(challenge_id="no-such", code="123456"), timeout=10
                )
            codes.append(raised.value.code())
        assert codes == [UNAUTH, UNAUTH, EXHAUSTED]


def test_the_source_is_the_peer_address_without_its_port() -> None:
    assert source_of("ipv4:10.1.2.3:5555") == "10.1.2.3"
    assert source_of("ipv6:[::1]:5555") == "::1"
    assert source_of("unix:/tmp/sock") == "unix:/tmp/sock"
