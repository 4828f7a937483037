"""One OpenID provider as a relying party sees it: endpoints, keys, the code exchange.

Built on authlib (its httpx OAuth2 client builds the authorization URL with
PKCE S256 and exchanges the code; its CodeIDToken validates the ID token's
claims, nonce included) and joserfc (signatures). Caching is ours: authlib's
discovery cache never refreshes, so the discovery document is fetched again
after `discovery_ttl`; the JWKS is kept until a token names a key id it does
not hold, and then fetched once more (the provider rotated its keys).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx
from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from marquee_auth.oidc_settings import OidcProviderConfig

with warnings.catch_warnings():
    # authlib would rather use the httpx2 fork; httpx is the one locked here and
    # works the same. Without this, every start logs a deprecation notice.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
        OAuthError,
    )

# Clock skew tolerated on exp/iat/nbf.
LEEWAY_SECONDS = 60


class ProviderUnavailable(Exception):
    """The provider did not answer (in time) or answered nonsense: retry later."""


class LoginRefused(Exception):
    """The provider's answer does not prove this login (bad code, token, nonce...)."""


@dataclass(frozen=True)
class Endpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    # Algorithms the provider signs ID tokens with; RS256 when it does not say.
    signing_algs: tuple[str, ...]


@dataclass(frozen=True)
class Identity:
    """What a verified ID token says about the user."""

    subject: str
    email: str | None
    email_verified: bool
    preferred_username: str | None
    name: str | None


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


class OidcProvider:
    def __init__(
        self,
        name: str,
        config: OidcProviderConfig,
        *,
        discovery_ttl: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self._ttl = discovery_ttl
        self._timeout = httpx.Timeout(timeout)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._endpoints: Endpoints | None = None
        self._fetched_at = 0.0
        self._jwks: tuple[str, KeySet] | None = None  # (jwks_uri, keys)
        # Counted for tests and logs: how often each document was fetched.
        self.discovery_fetches = 0
        self.jwks_fetches = 0

    async def endpoints(self) -> Endpoints:
        c = self.config
        if c.discovery_url is None:
            # Explicit configuration (validated complete at start): nothing to fetch.
            return Endpoints(
                issuer=str(c.issuer),
                authorization_endpoint=str(c.authorization_endpoint),
                token_endpoint=str(c.token_endpoint),
                jwks_uri=str(c.jwks_uri),
                signing_algs=tuple(c.id_token_signing_algs),
            )
        async with self._lock:
            if self._endpoints is None or self._clock() - self._fetched_at >= self._ttl:
                self._endpoints = self._parse_discovery(await self._get_json(c.discovery_url))
                self._fetched_at = self._clock()
                self.discovery_fetches += 1
            return self._endpoints

    def _parse_discovery(self, document: dict[str, Any]) -> Endpoints:
        fields = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        values = {f: document.get(f) for f in fields}
        missing = [f for f, v in values.items() if not isinstance(v, str) or not v]
        if missing:
            raise ProviderUnavailable(
                f"OIDC provider {self.name!r}: discovery document lacks {', '.join(missing)}"
            )
        expected = self.config.expected_issuer()
        if expected is not None and values["issuer"] != expected:
            # OIDC Discovery 4.3: a document for another issuer must not be used.
            raise ProviderUnavailable(
                f"OIDC provider {self.name!r}: discovery names issuer {values['issuer']!r}, "
                f"expected {expected!r}"
            )
        algs = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        return Endpoints(
            issuer=cast(str, values["issuer"]),
            authorization_endpoint=cast(str, values["authorization_endpoint"]),
            token_endpoint=cast(str, values["token_endpoint"]),
            jwks_uri=cast(str, values["jwks_uri"]),
            # "none" is never acceptable for an ID token from the token endpoint.
            signing_algs=tuple(str(a) for a in algs if a != "none"),
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(
                f"OIDC provider {self.name!r}: {url} failed: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"OIDC provider {self.name!r}: {url} is not a JSON object")
        return document

    async def _key_set(self, jwks_uri: str, *, force: bool) -> KeySet:
        cached = self._jwks
        if cached is not None and cached[0] == jwks_uri and not force:
            return cached[1]
        document = await self._get_json(jwks_uri)
        try:
            keys = KeySet.import_key_set(cast(Any, document))
        except (JoseError, ValueError, TypeError) as exc:
            raise ProviderUnavailable(f"OIDC provider {self.name!r}: bad JWKS: {exc}") from None
        self._jwks = (jwks_uri, keys)
        self.jwks_fetches += 1
        return keys

    def _client(self, redirect_uri: str) -> Any:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.secret(),
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106  # nosec B106
            scope=" ".join(self.config.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self._timeout,
        )

    async def authorization_url(
        self, redirect_uri: str, *, state: str, nonce: str, code_verifier: str
    ) -> str:
        endpoints = await self.endpoints()
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoints.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def exchange(
        self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str
    ) -> Identity:
        """Trade the code for tokens and return the verified ID token's identity."""
        endpoints = await self.endpoints()
        try:
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    endpoints.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except OAuthError as exc:
            raise LoginRefused(f"the provider refused the code: {exc.error}") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(
                f"OIDC provider {self.name!r}: token endpoint failed: {type(exc).__name__}: {exc}"
            ) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused("the provider's token response has no id_token")
        claims = await self._verify(
            id_token, endpoints, access_token=str(token.get("access_token", "")), nonce=nonce
        )
        return Identity(
            subject=str(claims["sub"]),
            email=_string(claims, "email"),
            email_verified=claims.get("email_verified") is True,
            preferred_username=_string(claims, "preferred_username"),
            name=_string(claims, "name"),
        )

    async def _verify(
        self, id_token: str, endpoints: Endpoints, *, access_token: str, nonce: str
    ) -> Any:
        registry = JWSRegistry(algorithms=list(endpoints.signing_algs), strict_check_header=False)
        try:
            try:
                keys = await self._key_set(endpoints.jwks_uri, force=False)
                decoded = jwt.decode(id_token, keys, registry=registry)
            except InvalidKeyIdError:
                # A kid we do not hold: the provider rotated. Fetch once more.
                keys = await self._key_set(endpoints.jwks_uri, force=True)
                decoded = jwt.decode(id_token, keys, registry=registry)
        except (JoseError, ValueError) as exc:
            raise LoginRefused(f"the ID token does not verify: {exc}") from None
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": endpoints.issuer},
                "aud": {"essential": True, "value": self.config.client_id},
            },
            {"nonce": nonce, "client_id": self.config.client_id, "access_token": access_token},
        )
        try:
            # authlib checks exp/iat/nbf, iss, aud, azp, at_hash, and the nonce.
            claims.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError) as exc:
            raise LoginRefused(f"the ID token is not valid for this login: {exc}") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise LoginRefused("the ID token has no subject")
        return claims
