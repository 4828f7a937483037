"""Registration and password login against a real PostgreSQL: errors, lockout, rehash."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from auth_support import (
    PASSWORD,
    auth_service,
    login,
    register_user,
    retry_delay_seconds,
    stub,
    unique_name,
    violations,
)

from marquee.auth.v1 import auth_pb2
from marquee_auth.rpc_accounts import WRONG_CREDENTIALS


async def test_register_then_login_returns_tokens_for_the_user(scratch_database_url: str) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        user = await register_user(auth, "Ada")
        assert user.id
        assert user.username == "Ada"
        assert user.email == "Ada@example.com"
        tokens = await login(auth, "ada")  # usernames are case-insensitive
        assert tokens.user_id == user.id
        assert tokens.token_type == "Bearer"
        assert tokens.access_token.count(".") == 2
        assert tokens.refresh_token.startswith("mqr_")
        assert tokens.session_id
        by_email = await login(auth, "ADA@example.com")
        assert by_email.user_id == user.id
        assert by_email.session_id != tokens.session_id, "each login is its own session"


async def test_a_taken_username_or_email_is_already_exists(scratch_database_url: str) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        await register_user(auth, "grace")
        for username, email, field in [
            ("GRACE", "other@example.com", "username"),
            ("grace2", "Grace@Example.com", "email"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.Register(
                    auth_pb2.RegisterRequest(username=username, email=email, password=PASSWORD),
                    timeout=30,
                )
            assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
            assert field in (raised.value.details() or "")


BAD_REGISTRATIONS = [
    (auth_pb2.RegisterRequest(), ["username", "email", "password"]),
    (
        auth_pb2.RegisterRequest(username="ab", email="a@b.co", password=PASSWORD),
        ["username"],
    ),
    (
        auth_pb2.RegisterRequest(username="-dash", email="a@b.co", password=PASSWORD),
        ["username"],
    ),
    (
        auth_pb2.RegisterRequest(username="okname", email="not-an-email", password=PASSWORD),
        ["email"],
    ),
    (
        auth_pb2.RegisterRequest(username="okname", email="a b@c.de", password=PASSWORD),
        ["email"],
    ),
    (auth_pb2.RegisterRequest(username="okname", email="a@b.co", password="short"), ["password"]),
    (
        auth_pb2.RegisterRequest(username="okname", email="a@b.co", password="p" * 1025),
        ["password"],
    ),
    (
        auth_pb2.RegisterRequest(
            username="okname", email="a@b.co", password=PASSWORD, display_name="bell\x07"
        ),
        ["display_name"],
    ),
]
BAD_LOGINS = [
    (auth_pb2.LoginRequest(), ["username", "password"]),
    (auth_pb2.LoginRequest(username="x" * 255, password="p"), ["username"]),
    (auth_pb2.LoginRequest(username="a\nb", password="p"), ["username"]),
    (auth_pb2.LoginRequest(username="someone", password="p" * 1025), ["password"]),
]


async def test_bad_input_is_invalid_argument_with_field_violations(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        cases: list[tuple[str, object, list[str]]] = [
            *(("Register", request, fields) for request, fields in BAD_REGISTRATIONS),
            *(("Login", request, fields) for request, fields in BAD_LOGINS),
            ("Refresh", auth_pb2.RefreshRequest(), ["refresh_token"]),
            ("Refresh", auth_pb2.RefreshRequest(refresh_token="\x00" * 10), ["refresh_token"]),
            ("Logout", auth_pb2.LogoutRequest(refresh_token="é" * 10), ["refresh_token"]),
        ]
        for method, request, fields in cases:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await getattr(auth, method)(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, request)
            assert violations(raised.value) == fields, (method, request)


async def test_unknown_user_and_wrong_password_get_the_same_answer(
    scratch_database_url: str,
) -> None:
    async with auth_service(scratch_database_url) as service:
        auth = stub(service)
        name = unique_name()
        await register_user(auth, name)
        answers = []
        for username in (name, "nobody-here"):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.Login(
                    auth_pb2.LoginRequest(username=username, password="wrong password!"),
                    timeout=30,
                )
            answers.append((raised.value.code(), raised.value.details()))
        assert answers[0] == answers[1] == (grpc.StatusCode.UNAUTHENTICATED, WRONG_CREDENTIALS)


async def test_repeated_failures_lock_the_account_with_retry_info(
    scratch_database_url: str,
) -> None:
    async with auth_service(
        scratch_database_url,
        lockout_threshold=3,
        lockout_seconds=600,
        backoff_after_failures=100,
    ) as service:
        auth = stub(service)
        name = unique_name()
        await register_user(auth, name)
        codes = []
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.Login(auth_pb2.LoginRequest(username=name, password="nope"), timeout=30)
            codes.append(raised.value.code())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        # Locked: even the right password is refused, with how long to wait.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await login(auth, name)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        delay = retry_delay_seconds(raised.value)
        assert delay is not None
        assert 500 < delay <= 600


async def test_backoff_before_lockout_then_success_resets_the_count(
    scratch_database_url: str,
) -> None:
    async with auth_service(
        scratch_database_url,
        lockout_threshold=10,
        backoff_after_failures=2,
        backoff_base_seconds=300,
    ) as service:
        auth = stub(service)
        name = unique_name()
        await register_user(auth, name)
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.Login(auth_pb2.LoginRequest(username=name, password="nope"), timeout=30)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await login(auth, name)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "backing off"
        conn = await asyncpg.connect(scratch_database_url)
        try:
            await conn.execute("UPDATE auth_users SET locked_until = NULL")
            await login(auth, name)
            failed = await conn.fetchval(
                "SELECT failed_logins FROM auth_users WHERE username = $1", name
            )
        finally:
            await conn.close()
        assert failed == 0


async def test_changed_argon2_parameters_rehash_at_the_next_login(
    scratch_database_url: str,
) -> None:
    name = unique_name()
    async with auth_service(scratch_database_url, argon2_time_cost=1) as service:
        await register_user(stub(service), name)

    async def stored_hash() -> str:
        conn = await asyncpg.connect(scratch_database_url)
        try:
            value = await conn.fetchval(
                "SELECT p.hash FROM auth_password_credentials p"
                " JOIN auth_users u ON u.id = p.user_id WHERE u.username = $1",
                name,
            )
        finally:
            await conn.close()
        assert isinstance(value, str)
        return value

    before = await stored_hash()
    assert before.startswith("$argon2id$")
    assert ",t=1," in before
    async with auth_service(scratch_database_url, argon2_time_cost=2) as service:
        await login(stub(service), name)
        after = await stored_hash()
        assert ",t=2," in after, "rehashed with the new parameters"
        await login(stub(service), name)  # and the new hash verifies


async def _user_state(database_url: str, name: str) -> tuple[int, object, str]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT u.failed_logins, u.locked_until, p.hash FROM auth_users u"
            " JOIN auth_password_credentials p ON p.user_id = u.id WHERE u.username = $1",
            name,
        )
    finally:
        await conn.close()
    assert row is not None
    return row["failed_logins"], row["locked_until"], row["hash"]


async def test_a_login_after_failures_resets_the_count_and_a_clean_one_writes_nothing(
    scratch_database_url: str,
) -> None:
    """A login writes the account only when a failure count or backoff is to clear."""
    async with auth_service(scratch_database_url, lockout_threshold=10) as service:
        auth = stub(service)
        name = unique_name()
        await register_user(auth, name)
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await auth.Login(auth_pb2.LoginRequest(username=name, password="nope"), timeout=30)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (await _user_state(scratch_database_url, name))[:2] == (2, None)
        await login(auth, name)
        assert (await _user_state(scratch_database_url, name))[:2] == (0, None)

        conn = await asyncpg.connect(scratch_database_url)
        try:
            xmin = "SELECT xmin::text FROM auth_users WHERE username = $1"
            before = await conn.fetchval(xmin, name)
            await login(auth, name)
            assert await conn.fetchval(xmin, name) == before, "nothing to reset: no write"
        finally:
            await conn.close()


async def test_a_rehash_and_a_reset_are_written_together(scratch_database_url: str) -> None:
    name = unique_name()
    async with auth_service(scratch_database_url, argon2_time_cost=1) as service:
        auth = stub(service)
        await register_user(auth, name)
        with pytest.raises(grpc.aio.AioRpcError):
            await auth.Login(auth_pb2.LoginRequest(username=name, password="nope"), timeout=30)
    failed, _, before = await _user_state(scratch_database_url, name)
    assert failed == 1
    assert ",t=1," in before
    async with auth_service(scratch_database_url, argon2_time_cost=2) as service:
        await login(stub(service), name)
        failed, locked_until, after = await _user_state(scratch_database_url, name)
        assert (failed, locked_until) == (0, None)
        assert ",t=2," in after
        # Only the rehash left to do, then nothing at all.
        await login(stub(service), name)
        assert await _user_state(scratch_database_url, name) == (0, None, after)
