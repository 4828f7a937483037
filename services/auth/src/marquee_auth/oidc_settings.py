"""How one OpenID provider is configured (MARQUEE_AUTH_OIDC_PROVIDERS, a JSON map).

A provider is found through its discovery document, or, only when the
configuration says so, through endpoints given explicitly: nothing is ever
guessed from an issuer URL. The client secret is given inline or as a file to
read (a mounted secret); either way it is a SecretStr, never logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}

FirstLogin = Literal["create", "link_by_email", "refuse"]


def check_url(url: str, *, what: str) -> str:
    """An absolute URL; https, or http to a loopback host (local providers, tests)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL, not {url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError(f"{what} must use https (http only to localhost): {url!r}")
    if parts.fragment:
        raise ValueError(f"{what} must not have a fragment: {url!r}")
    return url


class OidcProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Either this, or the four explicit fields below.
    discovery_url: str | None = None
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    # With explicit endpoints: the algorithms ID tokens may be signed with
    # (discovery documents say it themselves).
    id_token_signing_algs: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # Where the provider may send the browser back; BeginOidcLogin accepts no other.
    redirect_uris: list[str] = Field(min_length=1)
    # What a subject seen for the first time gets: a new local user, a link to
    # the existing user holding the same *verified* email (and nothing else),
    # or a refusal (only already linked subjects log in).
    on_first_login: FirstLogin = "refuse"

    @field_validator("redirect_uris")
    @classmethod
    def _redirects_are_urls(cls, value: list[str]) -> list[str]:
        return [check_url(uri, what="a redirect_uri") for uri in value]

    @field_validator("id_token_signing_algs")
    @classmethod
    def _no_unsigned_tokens(cls, value: list[str]) -> list[str]:
        if "none" in value:
            raise ValueError("'none' is not an acceptable ID token algorithm")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include 'openid' (no ID token otherwise)")
        if any(not s or " " in s for s in value):
            raise ValueError("each scope is one non-empty word")
        return value

    @model_validator(mode="after")
    def _endpoints_and_secret(self) -> Self:
        explicit = {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
        }
        given = [name for name, url in explicit.items() if url is not None]
        if self.discovery_url is not None:
            if given:
                raise ValueError(
                    "give either discovery_url or explicit endpoints, not both "
                    f"(also given: {', '.join(given)})"
                )
            check_url(self.discovery_url, what="discovery_url")
        else:
            missing = [name for name, url in explicit.items() if url is None]
            if missing:
                raise ValueError(
                    "without discovery_url, issuer, authorization_endpoint, token_endpoint "
                    f"and jwks_uri are all required (missing: {', '.join(missing)})"
                )
            for name, url in explicit.items():
                assert url is not None
                check_url(url, what=name)
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("give exactly one of client_secret and client_secret_file")
        if self.client_secret_file is not None and not self.client_secret_file.is_file():
            raise ValueError(f"client_secret_file {str(self.client_secret_file)!r} is not a file")
        return self

    def secret(self) -> str:
        if self.client_secret is not None:
            return self.client_secret.get_secret_value()
        assert self.client_secret_file is not None
        return self.client_secret_file.read_text().strip()

    def expected_issuer(self) -> str | None:
        """The issuer the discovery document must name (OIDC Discovery 4.3)."""
        if self.issuer is not None:
            return self.issuer
        assert self.discovery_url is not None
        if self.discovery_url.endswith(DISCOVERY_SUFFIX):
            return self.discovery_url[: -len(DISCOVERY_SUFFIX)]
        return None


def _problem(location: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    field = ".".join(str(part) for part in location)
    return f"{field}: {message}" if field else message


def parse_providers(value: object) -> object:
    """Each provider validated on its own, so a message names the provider and field.

    Only pydantic's messages are kept, never the input values (a secret may be one).
    """
    if not isinstance(value, dict):
        return value
    parsed: dict[str, OidcProviderConfig] = {}
    for name, config in value.items():
        if not isinstance(name, str) or not PROVIDER_NAME.fullmatch(name):
            raise ValueError(
                f"OIDC provider name {name!r}: 1 to 32 of a-z, 0-9, '_' or '-', "
                "starting with a letter or digit"
            )
        if isinstance(config, OidcProviderConfig):
            parsed[name] = config
            continue
        try:
            parsed[name] = OidcProviderConfig.model_validate(config)
        except ValidationError as exc:
            problems = "; ".join(_problem(error["loc"], error["msg"]) for error in exc.errors())
            raise ValueError(f"OIDC provider {name!r}: {problems}") from None
    return parsed
