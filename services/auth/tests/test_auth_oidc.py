"""OIDC login end to end against a real provider (npm oidc-provider) on localhost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pyotp
import pytest
from auth_support import auth_service, bearer, register_user, stub, violations

from marquee.auth.v1 import auth_pb2
from marquee_auth.oidc_client import OidcProvider, ProviderUnavailable
from marquee_auth.oidc_settings import OidcProviderConfig
from marquee_auth.settings import AuthSettings
from marquee_localservers import OidcProviderServer, free_port
from marquee_platform.settings import InvalidSettings, load_settings
from marquee_testing.inprocess import RunningService
from marquee_testing.oidc.browser import Callback, log_in

if TYPE_CHECKING:
    from marquee.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub

_people = itertools.count()


def person(prefix: str = "oidc") -> str:
    """A login name at the provider (its `sub`), unique in this session."""
    return f"{prefix}{next(_people)}-{secrets.token_hex(3)}@example.com"


def provider_config(server: OidcProviderServer, **overrides: Any) -> dict[str, Any]:
    return {
        "discovery_url": server.discovery_url,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "redirect_uris": list(server.redirect_uris),
        "on_first_login": "create",
        **overrides,
    }


@contextlib.asynccontextmanager
async def oidc_auth(
    database_url: str, providers: dict[str, dict[str, Any]], **settings: Any
) -> AsyncIterator[RunningService]:
    async with auth_service(database_url, oidc_providers=providers, **settings) as running:
        yield running


@pytest.fixture
async def service(
    scratch_database_url: str, oidc_provider: OidcProviderServer
) -> AsyncIterator[RunningService]:
    async with oidc_auth(scratch_database_url, {"dev": provider_config(oidc_provider)}) as running:
        yield running


async def begin(
    auth: AuthServiceAsyncStub, redirect_uri: str, provider: str = "dev"
) -> auth_pb2.BeginOidcLoginResponse:
    return await auth.BeginOidcLogin(
        auth_pb2.BeginOidcLoginRequest(provider=provider, redirect_uri=redirect_uri), timeout=30
    )


async def browse(
    auth: AuthServiceAsyncStub, redirect_uri: str, name: str, provider: str = "dev"
) -> Callback:
    begun = await begin(auth, redirect_uri, provider)
    callback = await log_in(begun.authorization_url, redirect_uri, name)
    assert callback.state == begun.state
    return callback


async def complete(
    auth: AuthServiceAsyncStub, callback: Callback
) -> auth_pb2.CompleteOidcLoginResponse:
    return await auth.CompleteOidcLogin(
        auth_pb2.CompleteOidcLoginRequest(code=callback.code, state=callback.state), timeout=30
    )


async def oidc_login(
    auth: AuthServiceAsyncStub, server: OidcProviderServer, name: str, provider: str = "dev"
) -> auth_pb2.CompleteOidcLoginResponse:
    return await complete(auth, await browse(auth, server.redirect_uris[0], name, provider))


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_begin_uses_state_nonce_and_pkce_s256(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    begun = await begin(stub(service), oidc_provider.redirect_uris[0])
    url = begun.authorization_url
    assert url.startswith(f"{oidc_provider.url}/auth?")
    for part in ("code_challenge_method=S256", "code_challenge=", "nonce=", f"state={begun.state}"):
        assert part in url
    assert begun.expires_at.ToDatetime(UTC) > datetime.now(UTC)


async def test_first_login_creates_a_user_and_the_next_reuses_it(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    name = person()
    first = await oidc_login(auth, oidc_provider, name)
    assert first.user_created
    assert first.WhichOneof("result") == "tokens"
    second = await oidc_login(auth, oidc_provider, name)
    assert not second.user_created
    assert second.tokens.user_id == first.tokens.user_id
    assert second.tokens.session_id != first.tokens.session_id
    other = await oidc_login(auth, oidc_provider, person())
    assert other.user_created
    assert other.tokens.user_id != first.tokens.user_id
    # The created user has no password: no password logs in as them.
    account = await auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=second.tokens.refresh_token), timeout=30
    )
    assert account.tokens.user_id == first.tokens.user_id
    error = await refused(
        auth.Login(auth_pb2.LoginRequest(username=name, password="x" * 12), timeout=30)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_replayed_callback_is_refused(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    callback = await browse(auth, oidc_provider.redirect_uris[0], person())
    assert (await complete(auth, callback)).WhichOneof("result") == "tokens"
    error = await refused(complete(auth, callback))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in (error.details() or "")


async def test_concurrent_callbacks_of_one_state_let_one_through(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    callback = await browse(auth, oidc_provider.redirect_uris[0], person())
    outcomes = await asyncio.gather(
        *(complete(auth, callback) for _ in range(4)), return_exceptions=True
    )
    assert sum(isinstance(o, auth_pb2.CompleteOidcLoginResponse) for o in outcomes) == 1
    for outcome in outcomes:
        if isinstance(outcome, grpc.aio.AioRpcError):
            assert outcome.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_wrong_nonce_is_refused(
    service: RunningService, oidc_provider: OidcProviderServer, scratch_database_url: str
) -> None:
    auth = stub(service)
    callback = await browse(auth, oidc_provider.redirect_uris[0], person())
    # The ID token carries the nonce sent; the pending login now expects another.
    conn = await asyncpg.connect(scratch_database_url)
    try:
        await conn.execute("UPDATE auth_oidc_logins SET nonce = 'not-the-nonce-sent'")
    finally:
        await conn.close()
    error = await refused(complete(auth, callback))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "nonce" in (error.details() or "")


async def test_an_expired_state_is_refused(
    service: RunningService, oidc_provider: OidcProviderServer, scratch_database_url: str
) -> None:
    auth = stub(service)
    callback = await browse(auth, oidc_provider.redirect_uris[0], person())
    conn = await asyncpg.connect(scratch_database_url)
    try:
        await conn.execute("UPDATE auth_oidc_logins SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    error = await refused(complete(auth, callback))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_state_begun_for_another_redirect_uri_is_refused(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    first, other = oidc_provider.redirect_uris
    elsewhere = await begin(auth, first)
    callback = await browse(auth, other, person())
    # The code was issued for `other` with that login's PKCE challenge; the
    # state names `first` and its own verifier: the provider refuses the pair.
    mixed = Callback(callback.code, elsewhere.state, callback.url)
    error = await refused(complete(auth, mixed))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # And the state is spent by that attempt.
    error = await refused(complete(auth, mixed))
    assert "already used" in (error.details() or "")


async def test_unknown_provider_or_redirect_uri_is_invalid_argument(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    error = await refused(begin(auth, oidc_provider.redirect_uris[0], provider="nope"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == ["provider"]
    error = await refused(begin(auth, "http://127.0.0.1:8765/evil"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == ["redirect_uri"]
    error = await refused(auth.CompleteOidcLogin(auth_pb2.CompleteOidcLoginRequest(), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(violations(error)) == ["code", "state"]
    error = await refused(
        auth.CompleteOidcLogin(
            auth_pb2.CompleteOidcLoginRequest(code="c", state="never-issued"), timeout=30
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_first_login_policies_refuse_and_link_by_email(
    scratch_database_url: str, oidc_provider: OidcProviderServer
) -> None:
    providers = {
        "closed": provider_config(oidc_provider, on_first_login="refuse"),
        "byemail": provider_config(oidc_provider, on_first_login="link_by_email"),
    }
    async with oidc_auth(scratch_database_url, providers) as running:
        auth = stub(running)
        error = await refused(oidc_login(auth, oidc_provider, person(), "closed"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

        user = await register_user(auth)  # email: <username>@example.com, verified by the provider
        linked = await oidc_login(auth, oidc_provider, user.email, "byemail")
        assert not linked.user_created
        assert linked.tokens.user_id == user.id
        # From now on the link (provider, sub) is what logs in, also under "refuse".
        again = await oidc_login(auth, oidc_provider, user.email, "byemail")
        assert again.tokens.user_id == user.id

        error = await refused(oidc_login(auth, oidc_provider, person(), "byemail"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, "no account has that email"
        unverified = f"unverified-{user.email}"  # the test provider marks it unverified
        error = await refused(oidc_login(auth, oidc_provider, unverified, "byemail"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_create_never_takes_over_an_account_by_its_email(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    user = await register_user(auth)
    error = await refused(oidc_login(auth, oidc_provider, user.email))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "email exists already" in (error.details() or "")
    # An unverified address is not taken as the new user's email at all.
    unverified = await oidc_login(auth, oidc_provider, f"unverified-{user.email}")
    assert unverified.user_created
    assert unverified.tokens.user_id != user.id


async def test_a_user_with_totp_gets_a_challenge_instead_of_tokens(
    service: RunningService, oidc_provider: OidcProviderServer
) -> None:
    auth = stub(service)
    name = person()
    first = await oidc_login(auth, oidc_provider, name)
    access = bearer(first.tokens.access_token)
    enrollment = await auth.EnrollTotp(auth_pb2.EnrollTotpRequest(), metadata=access, timeout=30)
    totp = pyotp.TOTP(enrollment.secret)
    await auth.ConfirmTotp(
        auth_pb2.ConfirmTotpRequest(code=totp.now()), metadata=access, timeout=30
    )
    second = await oidc_login(auth, oidc_provider, name)
    assert second.WhichOneof("result") == "mfa_challenge"
    assert auth_pb2.MFA_METHOD_TOTP in second.mfa_challenge.allowed_methods
    assert not second.user_created


async def test_discovery_is_fetched_again_after_its_ttl(oidc_provider: OidcProviderServer) -> None:
    now = [1000.0]
    config = OidcProviderConfig(**provider_config(oidc_provider))
    provider = OidcProvider("dev", config, discovery_ttl=60, timeout=10, clock=lambda: now[0])
    first = await provider.endpoints()
    assert first.issuer == oidc_provider.url
    now[0] += 59
    await provider.endpoints()
    assert provider.discovery_fetches == 1, "cached within the TTL"
    now[0] += 1
    assert await provider.endpoints() == first
    assert provider.discovery_fetches == 2, "fetched again once the TTL has passed"


@contextlib.contextmanager
def stalled_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_an_unreachable_or_stalled_provider_is_unavailable(
    scratch_database_url: str, oidc_provider: OidcProviderServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    with stalled_port() as port:
        # Explicit endpoints: the browser part at the real provider, the token
        # endpoint at a port that never answers.
        stalled = provider_config(
            oidc_provider,
            discovery_url=None,
            issuer=oidc_provider.url,
            authorization_endpoint=f"{oidc_provider.url}/auth",
            token_endpoint=f"http://127.0.0.1:{port}/token",
            jwks_uri=f"{oidc_provider.url}/jwks",
        )
        providers = {"dead": provider_config(oidc_provider, discovery_url=dead), "stalled": stalled}
        async with oidc_auth(
            scratch_database_url, providers, oidc_http_timeout_seconds=1.0
        ) as running:
            auth = stub(running)
            error = await refused(begin(auth, oidc_provider.redirect_uris[0], "dead"))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            callback = await browse(auth, oidc_provider.redirect_uris[0], person(), "stalled")
            error = await refused(complete(auth, callback))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "token endpoint" in (error.details() or "")


async def test_keys_rotated_by_the_provider_are_fetched_again(
    oidc_provider: OidcProviderServer,
) -> None:
    config = OidcProviderConfig(**provider_config(oidc_provider))
    provider = OidcProvider("dev", config, discovery_ttl=3600, timeout=10)
    redirect_uri = oidc_provider.redirect_uris[0]

    async def login_once() -> None:
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        url = await provider.authorization_url(
            redirect_uri, state=state, nonce=nonce, code_verifier=verifier + verifier
        )
        callback = await log_in(url, redirect_uri, person())
        await provider.exchange(
            callback.code, redirect_uri=redirect_uri, code_verifier=verifier + verifier, nonce=nonce
        )

    await login_once()
    await login_once()
    assert provider.jwks_fetches == 1, "the key set is cached"
    # A new signing key, a new kid. From this (the main) thread, so the new
    # process still dies with the session (spawning.child_argv).
    oidc_provider.restart(60.0)
    await login_once()
    assert provider.jwks_fetches == 2, "an unknown kid fetched the key set again"
    with pytest.raises(ProviderUnavailable):
        await OidcProvider(
            "gone",
            OidcProviderConfig(
                **provider_config(
                    oidc_provider,
                    discovery_url=f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration",
                )
            ),
            discovery_ttl=60,
            timeout=2,
        ).endpoints()


def load_with_providers(monkeypatch: pytest.MonkeyPatch, providers: dict[str, Any]) -> AuthSettings:
    monkeypatch.setenv("MARQUEE_AUTH_OIDC_PROVIDERS", json.dumps(providers))
    return load_settings(AuthSettings)


SECRET = "s3cret-that-must-not-show"
DISCOVERY = "https://id.example.com/.well-known/openid-configuration"
BASE = {
    "client_id": "marquee",
    "client_secret": SECRET,
    "redirect_uris": ["https://app.example.com/cb"],
}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {**BASE, "discovery_url": DISCOVERY, "token_endpoint": "https://id.example.com/t"},
            "OIDC provider 'corp': give either discovery_url or explicit endpoints, not both",
        ),
        (
            {**BASE, "issuer": "https://id.example.com"},
            "missing: authorization_endpoint, token_endpoint, jwks_uri",
        ),
        (
            {**BASE, "discovery_url": "http://id.example.com/.well-known/openid-configuration"},
            "discovery_url must use https (http only to localhost)",
        ),
        ({**BASE, "discovery_url": DISCOVERY, "redirect_uris": []}, "redirect_uris: List should"),
        (
            {**BASE, "discovery_url": DISCOVERY, "on_first_login": "always"},
            "on_first_login: Input should be 'create', 'link_by_email' or 'refuse'",
        ),
        (
            {**BASE, "discovery_url": DISCOVERY, "client_secret_file": "/nonexistent"},
            "give exactly one of client_secret and client_secret_file",
        ),
        ({**BASE, "discovery_url": DISCOVERY, "scopes": ["email"]}, "must include 'openid'"),
    ],
)
def test_bad_provider_configuration_stops_the_start_with_a_clear_line(
    monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSettings) as raised:
        load_with_providers(monkeypatch, {"corp": config})
    text = str(raised.value)
    assert "MARQUEE_AUTH_OIDC_PROVIDERS" in text
    assert message in text
    assert SECRET not in text
    assert "\n" not in text


def test_provider_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidSettings, match="OIDC provider name 'Corp!'"):
        load_with_providers(monkeypatch, {"Corp!": {**BASE, "discovery_url": DISCOVERY}})


def test_a_secret_is_read_from_its_file_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    config = {**BASE, "discovery_url": DISCOVERY, "client_secret_file": str(secret_file)}
    del config["client_secret"]
    settings = load_with_providers(
        monkeypatch, {"corp": config, "other": {**BASE, "discovery_url": DISCOVERY}}
    )
    assert settings.oidc_providers["corp"].secret() == SECRET
    assert settings.oidc_providers["other"].secret() == SECRET
    assert settings.oidc_providers["corp"].on_first_login == "refuse", "nothing created unasked"
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())
