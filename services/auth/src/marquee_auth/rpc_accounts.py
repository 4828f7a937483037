"""AuthService's account RPCs: registration, password login, refresh, logout, the JWKS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2

from marquee.auth.v1 import auth_pb2
from marquee_auth.accounts import Account, UsernameTaken
from marquee_auth.attempt_limits import source_of
from marquee_auth.deps import Context, HandlerBase, timestamp
from marquee_auth.sessions import RefreshRefused
from marquee_auth.validation import Violations, check_login, check_new_account, check_token
from marquee_authn import TokenVerifier, bearer_token, public
from marquee_authn.declare import identify
from marquee_platform.errors import AlreadyExists, ServiceError, Unauthenticated

WRONG_CREDENTIALS = "wrong username or password"


def _user(account: Account) -> auth_pb2.User:
    return auth_pb2.User(
        id=account.id,
        username=account.username,
        email=account.email,
        display_name=account.display_name,
        created_at=timestamp(account.created_at),
    )


def _locked(until: datetime) -> ServiceError:
    """RESOURCE_EXHAUSTED with RetryInfo: the documented answer for a locked account."""
    wait = max(int((until - datetime.now(UTC)).total_seconds()), 1)
    return ServiceError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"too many failed logins: try again in {wait} s",
        details=[error_details_pb2.RetryInfo(retry_delay=Duration(seconds=wait))],
    )


class AccountRpcs(HandlerBase):
    token_verifier: TokenVerifier

    @public
    async def Register(
        self, request: auth_pb2.RegisterRequest, context: Context
    ) -> auth_pb2.RegisterResponse:
        v = Violations()
        check_new_account(
            v,
            request.username,
            request.email,
            request.password,
            request.display_name,
            self.deps.settings.min_password_length,
        )
        v.raise_if_any()
        password_hash = await self.deps.passwords.hash(request.password)
        try:
            account = await self.deps.accounts.create(
                request.username, request.email, request.display_name, password_hash
            )
        except UsernameTaken as exc:
            raise AlreadyExists(str(exc)) from None
        await self.grant_admin_if_configured(account.id, account.username)
        return auth_pb2.RegisterResponse(user=_user(account))

    @public
    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        v = Violations()
        check_login(v, request.username, request.password)
        v.raise_if_any()
        s = self.deps.settings
        await self.deps.limits.spend(
            "login",
            {
                f"account:{request.username.lower()}": s.login_attempts_per_account,
                f"source:{source_of(context.peer())}": s.login_attempts_per_source,
            },
        )
        account = await self.deps.accounts.find_for_login(request.username)
        locked_until = account.locked_until if account is not None else None
        if locked_until is not None and locked_until > datetime.now(UTC):
            # No password check while locked: guessing does not go on meanwhile.
            raise _locked(locked_until)
        verdict = await self.deps.passwords.verify(
            account.password_hash if account else None, request.password
        )
        if account is None or not verdict.ok:
            if account is not None:
                locked_until = await self.deps.accounts.record_failure(
                    account.id,
                    threshold=s.lockout_threshold,
                    lockout=timedelta(seconds=s.lockout_seconds),
                    backoff_after=s.backoff_after_failures,
                    backoff_base=timedelta(seconds=s.backoff_base_seconds),
                )
                if locked_until is not None and account.failed_logins + 1 >= s.lockout_threshold:
                    raise _locked(locked_until)
            raise Unauthenticated(WRONG_CREDENTIALS)
        await self.deps.accounts.record_success(account, verdict.new_hash)
        return await self.first_factor_passed(account.id, account.second_factors)

    @public
    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: Context
    ) -> auth_pb2.RefreshResponse:
        v = Violations()
        check_token(v, "refresh_token", request.refresh_token)
        v.raise_if_any()
        try:
            issued = await self.deps.sessions.rotate(request.refresh_token)
        except RefreshRefused as exc:
            raise Unauthenticated(str(exc)) from None
        return auth_pb2.RefreshResponse(tokens=self.tokens(issued))

    @public
    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: Context
    ) -> auth_pb2.LogoutResponse:
        # Public because a refresh token alone is proof enough; without one the
        # access token of the session is required.
        v = Violations()
        check_token(v, "refresh_token", request.refresh_token, required=False)
        v.raise_if_any()
        if request.refresh_token:
            revoked = await self.deps.sessions.revoke_by_refresh_token(
                request.refresh_token, all_of_user=request.all_sessions
            )
            return auth_pb2.LogoutResponse(revoked_sessions=revoked)
        if bearer_token(context.invocation_metadata()) is None:
            raise Unauthenticated(
                "logout needs the session's refresh_token or its access token "
                "('authorization: Bearer <access token>')"
            )
        identity = await identify(self.token_verifier, context)
        if request.all_sessions:
            revoked = await self.deps.sessions.revoke_all(identity.subject)
        else:
            revoked = await self.deps.sessions.revoke(identity.session_id)
        return auth_pb2.LogoutResponse(revoked_sessions=revoked)

    @public
    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Context
    ) -> auth_pb2.GetJwksResponse:
        # Read from the shared table: another replica may have rotated, and a
        # verifier that met a new key id must find it here, whichever replica it asks.
        await self.deps.keys.reload()
        published = self.deps.keys.published()
        keys = [
            auth_pb2.Jwk(
                kid=jwk.get("kid", ""),
                kty=jwk.get("kty", ""),
                alg=jwk.get("alg", ""),
                use=jwk.get("use", "sig"),
                crv=jwk.get("crv", ""),
                x=jwk.get("x", ""),
            )
            for jwk in published
        ]
        return auth_pb2.GetJwksResponse(keys=keys, jwks_json=json.dumps({"keys": published}))
