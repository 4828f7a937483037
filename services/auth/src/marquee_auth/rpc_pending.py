"""AuthService RPCs not built yet: each answers UNIMPLEMENTED naming itself (issue 11)."""

from __future__ import annotations

from typing import Any

from marquee_auth.deps import Context
from marquee_authn import TokenVerifier, public
from marquee_platform.errors import unimplemented


class PendingRpcs:
    token_verifier: TokenVerifier

    @public
    async def BeginOidcLogin(self, request: Any, context: Context) -> Any:
        unimplemented("AuthService/BeginOidcLogin", issue="auth: OIDC")

    @public
    async def CompleteOidcLogin(self, request: Any, context: Context) -> Any:
        unimplemented("AuthService/CompleteOidcLogin", issue="auth: OIDC")
