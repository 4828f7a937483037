"""What the AuthService handlers share: stores, hashers, keys, settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.auth.v1 import auth_pb2
from marquee_auth.accounts import Accounts, SecondFactors
from marquee_auth.attempt_limits import AttemptLimits
from marquee_auth.mfa_challenges import MfaChallenges
from marquee_auth.oidc_client import OidcProvider
from marquee_auth.oidc_store import OidcStore
from marquee_auth.oidc_users import OidcUsers
from marquee_auth.passkeys import Passkeys
from marquee_auth.passwords import Passwords
from marquee_auth.policy_engine import PolicyEngine
from marquee_auth.sessions import IssuedRefresh, Sessions
from marquee_auth.settings import AuthSettings
from marquee_auth.signing_keys import KeyRing
from marquee_auth.tokens import AccessTokenIssuer
from marquee_auth.totp import Totp

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class AuthDeps:
    settings: AuthSettings
    accounts: Accounts
    sessions: Sessions
    passwords: Passwords
    keys: KeyRing
    issuer: AccessTokenIssuer
    totp: Totp
    challenges: MfaChallenges
    policy: PolicyEngine
    limits: AttemptLimits
    passkeys: Passkeys
    oidc_providers: Mapping[str, OidcProvider]
    oidc_store: OidcStore
    oidc_users: OidcUsers


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


class HandlerBase:
    """State every RPC mixin of the servicer reads."""

    deps: AuthDeps

    def tokens(self, issued: IssuedRefresh) -> auth_pb2.Tokens:
        access = self.deps.issuer.issue(issued.user_id, issued.session_id)
        return auth_pb2.Tokens(
            access_token=access.token,
            refresh_token=issued.token,
            token_type="Bearer",  # noqa: S106  # nosec B106
            access_token_expires_at=timestamp(access.expires_at),
            refresh_token_expires_at=timestamp(issued.expires_at),
            session_id=issued.session_id,
            user_id=issued.user_id,
        )

    async def grant_admin_if_configured(self, user_id: str, username: str) -> None:
        admins = {name.lower() for name in self.deps.settings.admin_usernames}
        if username.lower() in admins:
            await self.deps.policy.adapter.add_policy("g", "g", [user_id, "admin"])
            await self.deps.policy.reload()

    async def first_factor_passed(
        self, user_id: str, factors: SecondFactors | None = None
    ) -> auth_pb2.LoginResponse:
        """Tokens, or an MFA challenge when the user has a second factor (never both).

        `factors` as read with the account (Login), else read here.
        """
        if factors is None:
            factors = await self.deps.accounts.second_factors(user_id)
        methods = []
        if factors.totp:
            methods.append(auth_pb2.MFA_METHOD_TOTP)
            if factors.recovery_codes:
                methods.append(auth_pb2.MFA_METHOD_RECOVERY_CODE)
        if factors.passkeys:
            methods.append(auth_pb2.MFA_METHOD_WEBAUTHN)
        if methods:
            challenge = await self.deps.challenges.issue(user_id)
            return auth_pb2.LoginResponse(
                mfa_challenge=auth_pb2.MfaChallenge(
                    challenge_id=challenge.id,
                    allowed_methods=methods,
                    expires_at=timestamp(challenge.expires_at),
                )
            )
        return auth_pb2.LoginResponse(tokens=self.tokens(await self.deps.sessions.open(user_id)))
