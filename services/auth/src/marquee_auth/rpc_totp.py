"""AuthService's TOTP RPCs: enrol, confirm, and answer an MFA challenge with a code."""

from __future__ import annotations

from marquee.auth.v1 import auth_pb2
from marquee_auth.attempt_limits import source_of
from marquee_auth.db import Connection
from marquee_auth.deps import Context, HandlerBase, timestamp
from marquee_auth.mfa_challenges import ChallengeRefused
from marquee_auth.totp import TotpProblem, normalize_recovery_code
from marquee_auth.validation import Violations, check_token
from marquee_authn import TokenVerifier, authenticated, current_identity, public
from marquee_platform.errors import FailedPrecondition, InvalidArgument, Unauthenticated


def _check_code(v: Violations, field: str, code: str) -> None:
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        v.add(field, "a 6-digit code from the authenticator app")


class TotpRpcs(HandlerBase):
    token_verifier: TokenVerifier

    @authenticated
    async def EnrollTotp(
        self, request: auth_pb2.EnrollTotpRequest, context: Context
    ) -> auth_pb2.EnrollTotpResponse:
        user_id = current_identity().subject
        totp = self.deps.totp
        if await totp.is_active(user_id):
            # Replacing a factor needs proof of it: a stolen access token alone must not do.
            v = Violations()
            if not request.current_code:
                v.add("current_code", "required to replace the active TOTP")
            else:
                _check_code(v, "current_code", request.current_code)
            v.raise_if_any()
            accepted = await self._with_connection(user_id, request.current_code)
            if not accepted:
                raise Unauthenticated("current_code is wrong or was already used")
        account = await self.deps.accounts.get(user_id)
        if account is None:
            raise Unauthenticated("the account of this token no longer exists")
        enrollment = await totp.begin_enrollment(user_id, account.username)
        return auth_pb2.EnrollTotpResponse(
            secret=enrollment.secret,
            provisioning_uri=enrollment.provisioning_uri,
            expires_at=timestamp(enrollment.expires_at),
        )

    async def _with_connection(self, user_id: str, code: str) -> bool:
        pool = self.deps.accounts.pool
        async with pool.acquire() as conn, conn.transaction():
            return await self.deps.totp.accept_code(conn, user_id, code)

    @authenticated
    async def ConfirmTotp(
        self, request: auth_pb2.ConfirmTotpRequest, context: Context
    ) -> auth_pb2.ConfirmTotpResponse:
        v = Violations()
        _check_code(v, "code", request.code)
        v.raise_if_any()
        try:
            codes = await self.deps.totp.confirm(current_identity().subject, request.code)
        except TotpProblem as exc:
            if "does not match" in str(exc):
                raise InvalidArgument(str(exc), [("code", str(exc))]) from None
            raise FailedPrecondition(str(exc)) from None
        return auth_pb2.ConfirmTotpResponse(recovery_codes=codes)

    @public
    async def VerifyTotp(
        self, request: auth_pb2.VerifyTotpRequest, context: Context
    ) -> auth_pb2.VerifyTotpResponse:
        v = Violations()
        check_token(v, "challenge_id", request.challenge_id)
        if bool(request.code) == bool(request.recovery_code):
            v.add("code", "give exactly one of code and recovery_code")
        elif request.code:
            _check_code(v, "code", request.code)
        elif len(normalize_recovery_code(request.recovery_code)) != 16:
            v.add("recovery_code", "a recovery code such as ABCD-EFGH-IJKL-MNOP")
        v.raise_if_any()
        await self.deps.limits.spend(
            "mfa",
            {f"source:{source_of(context.peer())}": self.deps.settings.mfa_attempts_per_source},
        )
        totp = self.deps.totp

        async def answer(conn: Connection, user_id: str) -> bool:
            if request.code:
                return await totp.accept_code(conn, user_id, request.code)
            return await totp.accept_recovery_code(conn, user_id, request.recovery_code)

        try:
            user_id = await self.deps.challenges.complete(request.challenge_id, answer)
        except ChallengeRefused as exc:
            raise Unauthenticated(str(exc)) from None
        issued = await self.deps.sessions.open(user_id)
        return auth_pb2.VerifyTotpResponse(tokens=self.tokens(issued))
