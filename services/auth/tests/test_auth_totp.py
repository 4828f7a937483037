"""TOTP: enrolment, MFA enforced at login, replay refused atomically, recovery codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
import grpc
import pyotp
import pytest
from auth_support import PASSWORD, auth_service, bearer, register_user, stub, violations

from marquee.auth.v1 import auth_pb2
from marquee_auth.accounts import Accounts, SecondFactors
from marquee_testing.inprocess import RunningService

if TYPE_CHECKING:  # the async stub class exists only in the type stubs
    from marquee.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub

Metadata = tuple[tuple[str, str], ...]


class Enrolled(NamedTuple):
    username: str
    secret: str
    recovery: list[str]
    access: Metadata
    # The time step whose code confirmed the enrolment (spent from then on).
    step: int

    def code(self, steps_after_confirm: int) -> str:
        """Codes relative to the spent step, so a 30 s boundary mid-test changes nothing."""
        return pyotp.TOTP(self.secret).generate_otp(self.step + steps_after_confirm)


def current_step(secret: str) -> int:
    return int(pyotp.TOTP(secret).timecode(datetime.now(UTC)))


async def enrolled_user(auth: AuthServiceAsyncStub) -> Enrolled:
    """A user with TOTP confirmed."""
    user = await register_user(auth)
    first = await auth.Login(
        auth_pb2.LoginRequest(username=user.username, password=PASSWORD), timeout=30
    )
    access = bearer(first.tokens.access_token)
    enrollment = await auth.EnrollTotp(auth_pb2.EnrollTotpRequest(), metadata=access, timeout=10)
    assert enrollment.provisioning_uri.startswith("otpauth://totp/")
    step = current_step(enrollment.secret)
    confirmed = await auth.ConfirmTotp(
        auth_pb2.ConfirmTotpRequest(code=pyotp.TOTP(enrollment.secret).generate_otp(step)),
        metadata=access,
        timeout=10,
    )
    return Enrolled(user.username, enrollment.secret, list(confirmed.recovery_codes), access, step)


async def challenge_for(auth: AuthServiceAsyncStub, username: str) -> auth_pb2.MfaChallenge:
    response = await auth.Login(
        auth_pb2.LoginRequest(username=username, password=PASSWORD), timeout=30
    )
    assert response.WhichOneof("result") == "mfa_challenge", "MFA is enforced: no tokens"
    return response.mfa_challenge


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


@pytest.fixture
async def service(scratch_database_url: str) -> AsyncIterator[RunningService]:
    async with auth_service(scratch_database_url) as running:
        yield running


async def test_after_enrolment_login_answers_a_challenge_and_a_code_completes_it(
    service: RunningService,
) -> None:
    auth = stub(service)
    user = await enrolled_user(auth)
    username, recovery = user.username, user.recovery
    assert len(recovery) == 10
    assert len(set(recovery)) == 10
    challenge = await challenge_for(auth, username)
    assert set(challenge.allowed_methods) == {
        auth_pb2.MFA_METHOD_TOTP,
        auth_pb2.MFA_METHOD_RECOVERY_CODE,
    }
    # The confirming code's step is spent; the next step's code is accepted once.
    spent = await refused(
        auth.VerifyTotp(
            auth_pb2.VerifyTotpRequest(challenge_id=challenge.challenge_id, code=user.code(0)),
            timeout=10,
        )
    )
    assert spent.code() == grpc.StatusCode.UNAUTHENTICATED
    verified = await auth.VerifyTotp(
        auth_pb2.VerifyTotpRequest(challenge_id=challenge.challenge_id, code=user.code(1)),
        timeout=10,
    )
    assert verified.tokens.access_token
    assert verified.tokens.refresh_token

    # The challenge is single use, and the step cannot be replayed on a new challenge.
    again = await refused(
        auth.VerifyTotp(
            auth_pb2.VerifyTotpRequest(challenge_id=challenge.challenge_id, code=user.code(1)),
            timeout=10,
        )
    )
    assert again.code() == grpc.StatusCode.UNAUTHENTICATED
    fresh = await challenge_for(auth, username)
    replay = await refused(
        auth.VerifyTotp(
            auth_pb2.VerifyTotpRequest(challenge_id=fresh.challenge_id, code=user.code(1)),
            timeout=10,
        )
    )
    assert replay.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_concurrent_verifies_of_one_code_let_exactly_one_through(
    service: RunningService,
) -> None:
    auth = stub(service)
    user = await enrolled_user(auth)
    username = user.username
    challenges = [await challenge_for(auth, username) for _ in range(6)]
    code = user.code(1)

    async def verify(challenge: auth_pb2.MfaChallenge) -> grpc.StatusCode:
        try:
            await auth.VerifyTotp(
                auth_pb2.VerifyTotpRequest(challenge_id=challenge.challenge_id, code=code),
                timeout=10,
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    outcomes = await asyncio.gather(*(verify(c) for c in challenges))
    assert sorted(o.name for o in outcomes) == ["OK"] + ["UNAUTHENTICATED"] * 5


async def test_recovery_codes_work_once_each(service: RunningService) -> None:
    auth = stub(service)
    user = await enrolled_user(auth)
    username, recovery = user.username, user.recovery
    challenge = await challenge_for(auth, username)
    ok = await auth.VerifyTotp(
        auth_pb2.VerifyTotpRequest(
            challenge_id=challenge.challenge_id, recovery_code=recovery[0].lower()
        ),
        timeout=10,
    )
    assert ok.tokens.access_token
    second = await challenge_for(auth, username)
    reused = await refused(
        auth.VerifyTotp(
            auth_pb2.VerifyTotpRequest(challenge_id=second.challenge_id, recovery_code=recovery[0]),
            timeout=10,
        )
    )
    assert reused.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_wrong_codes_end_a_challenge(service: RunningService) -> None:
    auth = stub(service)
    user = await enrolled_user(auth)
    username = user.username
    challenge = await challenge_for(auth, username)
    wrong = "000000" if user.code(1) != "000000" else "111111"
    for _ in range(5):
        error = await refused(
            auth.VerifyTotp(
                auth_pb2.VerifyTotpRequest(challenge_id=challenge.challenge_id, code=wrong),
                timeout=10,
            )
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    ended = await refused(
        auth.VerifyTotp(
            auth_pb2.VerifyTotpRequest(challenge_id=challenge.challenge_id, code=user.code(1)),
            timeout=10,
        )
    )
    assert "expired or already used" in (ended.details() or "")


async def test_re_enrolment_needs_a_current_code(service: RunningService) -> None:
    auth = stub(service)
    user = await enrolled_user(auth)
    secret, access = user.secret, user.access
    missing = await refused(auth.EnrollTotp(auth_pb2.EnrollTotpRequest(), metadata=access))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(missing) == ["current_code"]
    used = await refused(
        auth.EnrollTotp(auth_pb2.EnrollTotpRequest(current_code=user.code(0)), metadata=access)
    )
    assert used.code() == grpc.StatusCode.UNAUTHENTICATED, "the confirming step is spent"
    renewed = await auth.EnrollTotp(
        auth_pb2.EnrollTotpRequest(current_code=user.code(1)), metadata=access
    )
    assert renewed.secret != secret
    replayed = await refused(
        auth.EnrollTotp(auth_pb2.EnrollTotpRequest(current_code=user.code(1)), metadata=access)
    )
    assert replayed.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_confirm_without_enrolment_or_with_a_wrong_code(service: RunningService) -> None:
    auth = stub(service)
    user = await register_user(auth)
    login = await auth.Login(
        auth_pb2.LoginRequest(username=user.username, password=PASSWORD), timeout=30
    )
    access = bearer(login.tokens.access_token)
    nothing = await refused(
        auth.ConfirmTotp(auth_pb2.ConfirmTotpRequest(code="123456"), metadata=access)
    )
    assert nothing.code() == grpc.StatusCode.FAILED_PRECONDITION
    enrollment = await auth.EnrollTotp(auth_pb2.EnrollTotpRequest(), metadata=access)
    good = pyotp.TOTP(enrollment.secret).now()
    wrong = await refused(
        auth.ConfirmTotp(
            auth_pb2.ConfirmTotpRequest(code="000000" if good != "000000" else "111111"),
            metadata=access,
        )
    )
    assert wrong.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(wrong) == ["code"]


async def test_bad_verify_requests_are_invalid_argument(service: RunningService) -> None:
    auth = stub(service)
    cases = [
        (auth_pb2.VerifyTotpRequest(), ["challenge_id", "code"]),
        (auth_pb2.VerifyTotpRequest(challenge_id="c", code="1", recovery_code="x"), ["code"]),
        (auth_pb2.VerifyTotpRequest(challenge_id="c", code="12345a"), ["code"]),
        (auth_pb2.VerifyTotpRequest(challenge_id="c", recovery_code="short"), ["recovery_code"]),
    ]
    for request, fields in cases:
        error = await refused(auth.VerifyTotp(request, timeout=10))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert violations(error) == fields, request
    unknown = await refused(
        auth.VerifyTotp(auth_pb2.VerifyTotpRequest(challenge_id="nope", code="123456"))
    )
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_totp_seed_is_sealed_at_rest(
    service: RunningService, scratch_database_url: str
) -> None:
    secret = (await enrolled_user(stub(service))).secret
    conn = await asyncpg.connect(scratch_database_url)
    try:
        sealed = await conn.fetchval("SELECT secret_sealed FROM auth_totp")
    finally:
        await conn.close()
    assert isinstance(sealed, bytes)
    assert secret.encode() not in sealed


async def test_the_factors_read_with_the_account_match_those_read_alone(
    scratch_database_url: str, service: RunningService
) -> None:
    """Login reads the second factors with the account (one query); OIDC login reads
    them alone. Both must see the same, as factors come and go."""
    auth = stub(service)
    plain = await register_user(auth)
    user = await enrolled_user(auth)
    pool = await asyncpg.create_pool(scratch_database_url, min_size=1, max_size=2)
    assert pool is not None
    accounts = Accounts(pool)

    async def both(name: str) -> SecondFactors:
        account = await accounts.find_for_login(name)
        assert account is not None
        assert account.second_factors is not None
        assert account.second_factors == await accounts.second_factors(account.id)
        return account.second_factors

    try:
        assert await both(plain.username) == SecondFactors(False, False, False)
        assert await both(user.username) == SecondFactors(True, True, False)
        await pool.execute("UPDATE auth_recovery_codes SET used_at = now()")
        assert await both(user.username) == SecondFactors(True, False, False)
        challenge = await challenge_for(auth, user.username)
        assert list(challenge.allowed_methods) == [auth_pb2.MFA_METHOD_TOTP]
    finally:
        await pool.close()
