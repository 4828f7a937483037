"""AuthService's OpenID Connect login: Begin (state, nonce, PKCE) and Complete (the callback).

State, nonce and PKCE verifier stay server-side, single use and expiring; the
browser carries only the state. Complete spends the state before anything
else, so a replayed callback is refused whatever happens after. The login
then goes through first_factor_passed: a user with a second factor gets an
MFA challenge, never tokens, as with a password.
"""

from __future__ import annotations

import secrets

import structlog

from marquee.auth.v1 import auth_pb2
from marquee_auth.attempt_limits import source_of
from marquee_auth.deps import Context, HandlerBase, timestamp
from marquee_auth.oidc_client import LoginRefused, OidcProvider, ProviderUnavailable
from marquee_auth.oidc_store import PendingLogin
from marquee_auth.oidc_users import FirstLoginRefused
from marquee_auth.validation import Violations, check_token
from marquee_authn import public
from marquee_platform.errors import PermissionDenied, Unauthenticated, Unavailable

log = structlog.get_logger("marquee_auth.oidc")
MAX_CODE_CHARS = 2048
STATE_REFUSED = "OIDC login state unknown, expired or already used: begin again"


def _check_code(v: Violations, code: str) -> None:
    if not code:
        v.add("code", "required: the code from the provider's callback")
    elif len(code) > MAX_CODE_CHARS or not code.isascii() or not code.isprintable():
        v.add("code", f"at most {MAX_CODE_CHARS} printable ASCII characters")


class OidcRpcs(HandlerBase):
    def _provider(self, v: Violations, name: str) -> OidcProvider | None:
        providers = self.deps.oidc_providers
        if not name:
            v.add("provider", "required")
        elif name not in providers:
            known = ", ".join(sorted(providers)) or "none configured"
            v.add("provider", f"unknown OIDC provider (configured: {known})")
        return providers.get(name)

    @public
    async def BeginOidcLogin(
        self, request: auth_pb2.BeginOidcLoginRequest, context: Context
    ) -> auth_pb2.BeginOidcLoginResponse:
        v = Violations()
        provider = self._provider(v, request.provider)
        if provider is not None and request.redirect_uri not in provider.config.redirect_uris:
            v.add("redirect_uri", "must be one of the redirect URIs configured for this provider")
        v.raise_if_any()
        assert provider is not None
        # Each Begin writes a row: a flood from one source is limited like logins.
        await self.deps.limits.spend(
            "oidc-begin",
            {f"source:{source_of(context.peer())}": self.deps.settings.login_attempts_per_source},
        )
        state = secrets.token_urlsafe(32)
        # RFC 7636: 43 to 128 characters; 64 random bytes give 86.
        pending = PendingLogin(
            provider=provider.name,
            redirect_uri=request.redirect_uri,
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
        )
        try:
            url = await provider.authorization_url(
                pending.redirect_uri,
                state=state,
                nonce=pending.nonce,
                code_verifier=pending.code_verifier,
            )
        except ProviderUnavailable as exc:
            raise Unavailable(str(exc)) from None
        expires_at = await self.deps.oidc_store.open_login(state, pending)
        return auth_pb2.BeginOidcLoginResponse(
            authorization_url=url, state=state, expires_at=timestamp(expires_at)
        )

    @public
    async def CompleteOidcLogin(
        self, request: auth_pb2.CompleteOidcLoginRequest, context: Context
    ) -> auth_pb2.CompleteOidcLoginResponse:
        v = Violations()
        _check_code(v, request.code)
        check_token(v, "state", request.state)
        v.raise_if_any()
        await self.deps.limits.spend(
            "oidc",
            {f"source:{source_of(context.peer())}": self.deps.settings.login_attempts_per_source},
        )
        pending = await self.deps.oidc_store.take_login(request.state)
        provider = self.deps.oidc_providers.get(pending.provider) if pending else None
        if pending is None or provider is None:
            raise Unauthenticated(STATE_REFUSED)
        try:
            identity = await provider.exchange(
                request.code,
                redirect_uri=pending.redirect_uri,
                code_verifier=pending.code_verifier,
                nonce=pending.nonce,
            )
        except ProviderUnavailable as exc:
            raise Unavailable(str(exc)) from None
        except LoginRefused as exc:
            log.info("OIDC login refused", provider=provider.name, reason=str(exc))
            raise Unauthenticated(f"OIDC login refused: {exc}") from None
        try:
            resolved = await self.deps.oidc_users.resolve(
                provider.name, provider.config.on_first_login, identity
            )
        except FirstLoginRefused as exc:
            raise PermissionDenied(str(exc)) from None
        if resolved.created:
            log.info("user created by OIDC login", provider=provider.name, user_id=resolved.user_id)
            account = await self.deps.accounts.get(resolved.user_id)
            if account is not None:  # ADMIN_USERNAMES applies as at Register
                await self.grant_admin_if_configured(account.id, account.username)
        outcome = await self.first_factor_passed(resolved.user_id)
        response = auth_pb2.CompleteOidcLoginResponse(user_created=resolved.created)
        if outcome.HasField("tokens"):
            response.tokens.CopyFrom(outcome.tokens)
        else:
            response.mfa_challenge.CopyFrom(outcome.mfa_challenge)
        return response
