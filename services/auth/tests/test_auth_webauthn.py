"""Passkeys with a software authenticator: ceremonies, discoverable login, MFA, counters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pyotp
import pytest
from auth_support import PASSWORD, auth_service, bearer, login, register_user, stub, violations
from webauthn_authenticator import SoftAuthenticator

from marquee.auth.v1 import auth_pb2
from marquee_auth.accounts import Accounts, SecondFactors
from marquee_testing.inprocess import RunningService

if TYPE_CHECKING:
    from marquee.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub


@pytest.fixture
async def service(scratch_database_url: str) -> AsyncIterator[RunningService]:
    async with auth_service(scratch_database_url) as running:
        yield running


async def with_passkey(auth: AuthServiceAsyncStub) -> tuple[auth_pb2.User, SoftAuthenticator]:
    user = await register_user(auth)
    tokens = await login(auth, user.username)
    access = bearer(tokens.access_token)
    begun = await auth.BeginWebAuthnRegistration(
        auth_pb2.BeginWebAuthnRegistrationRequest(nickname="laptop"), metadata=access
    )
    options = json.loads(begun.options_json)
    assert options["authenticatorSelection"]["residentKey"] == "required", "discoverable"
    authenticator = SoftAuthenticator()
    finished = await auth.FinishWebAuthnRegistration(
        auth_pb2.FinishWebAuthnRegistrationRequest(
            ceremony_id=begun.ceremony_id,
            credential_json=authenticator.register(begun.options_json),
        ),
        metadata=access,
    )
    assert finished.credential.nickname == "laptop"
    return user, authenticator


async def passkey_login(
    auth: AuthServiceAsyncStub,
    authenticator: SoftAuthenticator,
    sign_count: int,
    **begin: str,
) -> auth_pb2.Tokens:
    begun = await auth.BeginWebAuthnLogin(auth_pb2.BeginWebAuthnLoginRequest(**begin))
    finished = await auth.FinishWebAuthnLogin(
        auth_pb2.FinishWebAuthnLoginRequest(
            ceremony_id=begun.ceremony_id,
            credential_json=authenticator.answer(begun.options_json, sign_count),
        )
    )
    return finished.tokens


async def test_a_discoverable_passkey_logs_in_without_a_username(service: RunningService) -> None:
    auth = stub(service)
    user, authenticator = await with_passkey(auth)
    begun = await auth.BeginWebAuthnLogin(auth_pb2.BeginWebAuthnLoginRequest())
    assert json.loads(begun.options_json).get("allowCredentials", []) == []
    tokens = await passkey_login(auth, authenticator, 1)
    assert tokens.user_id == user.id
    named = await passkey_login(auth, authenticator, 2, username=user.username)
    assert named.user_id == user.id


async def test_a_counter_that_stays_zero_passes_every_time(service: RunningService) -> None:
    auth = stub(service)
    user, authenticator = await with_passkey(auth)
    for _ in range(3):
        assert (await passkey_login(auth, authenticator, 0)).user_id == user.id


async def test_a_counter_that_goes_backwards_is_refused(service: RunningService) -> None:
    auth = stub(service)
    _, authenticator = await with_passkey(auth)
    await passkey_login(auth, authenticator, 5)
    for count in (5, 3, 0):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await passkey_login(auth, authenticator, count)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "counter" in (raised.value.details() or "")
    await passkey_login(auth, authenticator, 6)


async def test_a_passkey_answers_the_password_logins_mfa_challenge(
    service: RunningService,
) -> None:
    auth = stub(service)
    user, authenticator = await with_passkey(auth)
    first = await auth.Login(auth_pb2.LoginRequest(username=user.username, password=PASSWORD))
    assert first.WhichOneof("result") == "mfa_challenge", "a passkey is a second factor"
    challenge = first.mfa_challenge
    assert auth_pb2.MFA_METHOD_WEBAUTHN in challenge.allowed_methods
    tokens = await passkey_login(auth, authenticator, 1, challenge_id=challenge.challenge_id)
    assert tokens.user_id == user.id
    # The challenge was spent by that login.
    with pytest.raises(grpc.aio.AioRpcError) as spent:
        await auth.BeginWebAuthnLogin(
            auth_pb2.BeginWebAuthnLoginRequest(challenge_id=challenge.challenge_id)
        )
    assert spent.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_factors_read_with_the_account_see_passkeys_and_totp(
    scratch_database_url: str, service: RunningService
) -> None:
    """Login reads the three second-factor flags with the account (one query); a user
    with a passkey and TOTP gets a challenge offering all three, and no tokens."""
    auth = stub(service)
    user, authenticator = await with_passkey(auth)
    pool = await asyncpg.create_pool(scratch_database_url, min_size=1, max_size=2)
    assert pool is not None
    accounts = Accounts(pool)

    async def both() -> SecondFactors:
        account = await accounts.find_for_login(user.username)
        assert account is not None
        assert account.second_factors is not None
        assert account.second_factors == await accounts.second_factors(account.id)
        return account.second_factors

    try:
        assert await both() == SecondFactors(totp=False, recovery_codes=False, passkeys=True)
        access = bearer((await passkey_login(auth, authenticator, 1)).access_token)
        enrollment = await auth.EnrollTotp(auth_pb2.EnrollTotpRequest(), metadata=access)
        await auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code=pyotp.TOTP(enrollment.secret).now()),
            metadata=access,
        )
        assert await both() == SecondFactors(totp=True, recovery_codes=True, passkeys=True)
    finally:
        await pool.close()
    answer = await auth.Login(auth_pb2.LoginRequest(username=user.username, password=PASSWORD))
    assert answer.WhichOneof("result") == "mfa_challenge"
    assert list(answer.mfa_challenge.allowed_methods) == [
        auth_pb2.MFA_METHOD_TOTP,
        auth_pb2.MFA_METHOD_RECOVERY_CODE,
        auth_pb2.MFA_METHOD_WEBAUTHN,
    ]


async def test_another_users_passkey_cannot_answer_a_challenge(service: RunningService) -> None:
    auth = stub(service)
    alice, _ = await with_passkey(auth)
    _, mallory_key = await with_passkey(auth)
    first = await auth.Login(auth_pb2.LoginRequest(username=alice.username, password=PASSWORD))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await passkey_login(auth, mallory_key, 1, challenge_id=first.mfa_challenge.challenge_id)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_ceremonies_are_single_use(service: RunningService) -> None:
    auth = stub(service)
    _, authenticator = await with_passkey(auth)
    begun = await auth.BeginWebAuthnLogin(auth_pb2.BeginWebAuthnLoginRequest())
    answer = authenticator.answer(begun.options_json, 1)
    request = auth_pb2.FinishWebAuthnLoginRequest(
        ceremony_id=begun.ceremony_id, credential_json=answer
    )
    await auth.FinishWebAuthnLogin(request)
    with pytest.raises(grpc.aio.AioRpcError) as replay:
        await auth.FinishWebAuthnLogin(request)
    assert replay.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired or already used" in (replay.value.details() or "")


async def test_a_response_that_does_not_verify_is_invalid_argument(
    service: RunningService,
) -> None:
    auth = stub(service)
    _, authenticator = await with_passkey(auth)
    authenticator.origin = "https://evil.example"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await passkey_login(auth, authenticator, 1)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, "not a 403-type answer"
    assert violations(raised.value) == ["credential_json"]


JSON = ["credential_json"]


async def test_malformed_webauthn_requests_are_invalid_argument(service: RunningService) -> None:
    auth = stub(service)
    cases = [
        (auth_pb2.FinishWebAuthnLoginRequest(), ["ceremony_id", "credential_json"]),
        (
            auth_pb2.FinishWebAuthnLoginRequest(ceremony_id="c", credential_json="{"),
            ["credential_json"],
        ),
        (
            auth_pb2.FinishWebAuthnLoginRequest(ceremony_id="c", credential_json="[]"),
            ["credential_json"],
        ),
    ]
    for request, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await auth.FinishWebAuthnLogin(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(raised.value) == fields
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await auth.FinishWebAuthnLogin(
            auth_pb2.FinishWebAuthnLoginRequest(ceremony_id="nope", credential_json="{}")
        )
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
