"""Settings of the auth service, read from MARQUEE_AUTH_* variables."""

import base64
import binascii
from typing import Annotated, Self

from pydantic import Field, PostgresDsn, RedisDsn, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_auth.oidc_settings import OidcProviderConfig, parse_providers
from marquee_platform import ServiceSettings

# Base64 of 32 zero bytes would be a key anyone can read here; the dev profile
# derives its key from this fixed text instead, and says so in the log.
DEV_ENCRYPTION_KEY_SOURCE = "marquee-auth-dev-profile-only"


def _check_key(value: SecretStr) -> None:
    try:
        key = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, not {len(key)}")


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_AUTH_")

    database_url: PostgresDsn = PostgresDsn("postgresql://marquee@127.0.0.1:5432/marquee")
    # Apply pending migrations on start; without it a replica only checks the schema.
    migrate_on_start: bool = True
    # gRPC addresses of coordinator members, comma-separated in the environment.
    coordinator_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Run the job runtime (the `cleanup` periodic job). Unset: on exactly when
    # coordinator endpoints are configured, as periodic jobs need its leases.
    jobs_enabled: bool | None = None

    # Encrypts secrets at rest (signing keys, TOTP seeds): 32 bytes, base64.
    # Required outside the dev profile.
    encryption_key: SecretStr | None = None
    # Keys being rotated out, comma-separated: secrets sealed under one of them
    # still open, and are sealed again under ENCRYPTION_KEY at start.
    previous_encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # argon2id. Defaults are OWASP's minimum (m=19 MiB, t=2, p=1): ~26 ms a
    # hash on this project's 2-core machines. Changing them rehashes each
    # password at its owner's next login.
    argon2_time_cost: int = Field(default=2, ge=1, le=20)
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8 * 1024, le=1024 * 1024)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    # Hashes running at once; each holds argon2_memory_kib, so this bounds memory
    # under a login flood. Further logins wait their turn.
    max_concurrent_hashes: int = Field(default=2, ge=1, le=64)
    min_password_length: int = Field(default=12, ge=8, le=128)

    # Consecutive wrong passwords before the account locks, and for how long.
    # Below the threshold each failure adds backoff_base_seconds * 2^(n-1) of
    # lock (capped by the lockout), so guessing slows down long before it stops.
    lockout_threshold: int = Field(default=10, ge=1, le=1000)
    lockout_seconds: float = Field(default=900.0, gt=0)
    backoff_after_failures: int = Field(default=3, ge=1)
    backoff_base_seconds: float = Field(default=1.0, ge=0)

    issuer: str = "marquee-auth"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=300)
    # A new signing key after this long; the previous one stays published.
    signing_key_rotation_seconds: int = Field(default=7 * 86_400, ge=60)

    # Redis shared with the cache, for attempt limits across instances. Unset (or
    # down): each instance limits on its own (the cache limiter's local fallback).
    redis_url: RedisDsn | None = None
    # Attempts per window (seconds), per account and per source address. A
    # source is the peer address gRPC sees: behind a proxy, that is the proxy.
    login_attempts_per_account: int = Field(default=10, ge=1)
    login_attempts_per_source: int = Field(default=100, ge=1)
    mfa_attempts_per_source: int = Field(default=50, ge=1)
    attempt_window_seconds: float = Field(default=60.0, gt=0)
    # Keys in Redis start with this: suites sharing one Redis set their own.
    attempt_key_prefix: str = "ratelimit:auth:"

    # Users given the role `admin` (which the seeded policy lets do anything) at
    # start and when they register: how the first administrator comes to be.
    admin_usernames: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # MFA: a password login's challenge, and an unconfirmed TOTP enrolment.
    mfa_challenge_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    totp_enrollment_ttl_seconds: int = Field(default=600, ge=60, le=86_400)
    # The issuer an authenticator app shows next to the account.
    totp_issuer_name: str = "Marquee"

    # WebAuthn relying party: its id (a registrable domain of the origins) and
    # the web origins allowed to run ceremonies (the dev console by default).
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "Marquee"
    webauthn_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:8765"]
    )
    webauthn_ceremony_ttl_seconds: int = Field(default=300, ge=30, le=3600)

    # OpenID providers, a JSON map: name -> OidcProviderConfig (see oidc_settings).
    oidc_providers: dict[str, OidcProviderConfig] = Field(default_factory=dict)
    # A pending OIDC login (state, nonce, PKCE verifier) lives this long.
    oidc_login_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    # Discovery documents are fetched again after this long (authlib never does).
    oidc_discovery_ttl_seconds: float = Field(default=3600.0, gt=0)
    # Bound on each request to a provider; past it the RPC answers UNAVAILABLE.
    oidc_http_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("oidc_providers", mode="before")
    @classmethod
    def _providers(cls, value: object) -> object:
        return parse_providers(value)

    @field_validator("coordinator_endpoints", "admin_usernames", "webauthn_origins", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return [e.strip() for e in value.split(",") if e.strip()]
        return value

    @model_validator(mode="after")
    def _jobs_need_a_coordinator(self) -> Self:
        if self.jobs_enabled and not self.coordinator_endpoints:
            raise ValueError(
                "jobs_enabled needs coordinator_endpoints (periodic jobs use its leases)"
            )
        return self

    @field_validator("encryption_key")
    @classmethod
    def _key_is_32_bytes_base64(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_key(value)
        return value

    @field_validator("previous_encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("previous_encryption_keys")
    @classmethod
    def _previous_keys_are_32_bytes_base64(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            _check_key(key)
        return value

    # The dev console (a page to try auth by hand) on 127.0.0.1:CONSOLE_PORT;
    # -1 is off, 0 picks a port. Dev profile only.
    console_port: int = Field(default=-1, ge=-1, le=65535)

    @model_validator(mode="after")
    def _console_only_in_dev(self) -> Self:
        if self.console_port >= 0 and self.profile != "dev":
            raise ValueError("the dev console (CONSOLE_PORT) runs only in the dev profile")
        return self

    @model_validator(mode="after")
    def _encryption_key_outside_dev(self) -> Self:
        if self.encryption_key is None and self.profile != "dev":
            raise ValueError(
                "MARQUEE_AUTH_ENCRYPTION_KEY is required outside the dev profile "
                "(32 random bytes, base64: `openssl rand -base64 32`)"
            )
        return self

    @property
    def run_jobs(self) -> bool:
        if self.jobs_enabled is None:
            return bool(self.coordinator_endpoints)
        return self.jobs_enabled
