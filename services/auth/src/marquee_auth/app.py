"""gRPC wiring of the auth service."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import grpc
from joserfc.jwk import KeySet

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc, policy_pb2, policy_pb2_grpc
from marquee_auth.accounts import Accounts
from marquee_auth.attempt_limits import AttemptLimits, Limiter, LocalOnly
from marquee_auth.db import create_pool
from marquee_auth.deps import AuthDeps
from marquee_auth.key_rotation import reseal_all
from marquee_auth.mfa_challenges import MfaChallenges
from marquee_auth.oidc_client import OidcProvider
from marquee_auth.oidc_store import OidcStore
from marquee_auth.oidc_users import OidcUsers
from marquee_auth.passkeys import Passkeys
from marquee_auth.passwords import Passwords
from marquee_auth.policy_engine import PolicyEngine
from marquee_auth.rpc_policy import PolicyServicer
from marquee_auth.schema import MIGRATIONS
from marquee_auth.secret_box import SecretBox
from marquee_auth.servicer import AuthServicer
from marquee_auth.sessions import Sessions
from marquee_auth.settings import AuthSettings
from marquee_auth.signing_keys import KeyRing
from marquee_auth.tokens import AccessTokenIssuer
from marquee_auth.totp import Totp
from marquee_authn import TokenVerifier
from marquee_cache import Cache, RateLimiter
from marquee_jobs import cleanup_job
from marquee_jobs.service import start_job_runtime
from marquee_migrations.startup import migrate_on_start
from marquee_platform import ServiceContext

# How often a replica re-reads the signing keys and rotates them when due.
KEY_CHECK_SECONDS = 60.0


class KeyRingSource:
    """The verifier's JWKS source inside auth itself: the shared key table."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def fetch(self) -> KeySet:
        await self._ring.reload()
        return self._ring.key_set()


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, AuthSettings)
    if settings.encryption_key is None:
        ctx.log.warning("secrets are encrypted under the dev profile's fixed key (dev only)")
    dsn = str(settings.database_url)
    await migrate_on_start(dsn, MIGRATIONS, apply=settings.migrate_on_start)
    pool = await create_pool(dsn)
    ctx.on_shutdown(pool.close)

    access_lifetime = timedelta(seconds=settings.access_token_ttl_seconds)
    box = SecretBox.from_settings(settings)
    if settings.previous_encryption_keys:
        moved = await reseal_all(pool, box)
        ctx.log.info("secrets sealed again under the current encryption key", moved=moved)
    policy = PolicyEngine(pool, dsn)
    await policy.start()
    ctx.on_shutdown(policy.close)
    ctx.spawn(policy.keep_fresh(), name="auth-policy-reload")
    keys = KeyRing(
        pool,
        box,
        rotation=timedelta(seconds=settings.signing_key_rotation_seconds),
        token_lifetime=access_lifetime,
    )
    await keys.ensure_current()
    ctx.spawn(_keep_keys_current(ctx, keys, settings), name="auth-signing-keys")

    accounts = Accounts(pool)
    passwords = Passwords(settings)
    ctx.on_shutdown(passwords.close)
    oidc_store = OidcStore(pool, login_ttl=timedelta(seconds=settings.oidc_login_ttl_seconds))
    deps = AuthDeps(
        settings=settings,
        accounts=accounts,
        sessions=Sessions(pool, lifetime=timedelta(seconds=settings.refresh_token_ttl_seconds)),
        passwords=passwords,
        keys=keys,
        issuer=AccessTokenIssuer(keys, issuer=settings.issuer, lifetime=access_lifetime),
        totp=Totp(
            pool,
            box,
            issuer_name=settings.totp_issuer_name,
            enrollment_ttl=timedelta(seconds=settings.totp_enrollment_ttl_seconds),
        ),
        challenges=MfaChallenges(
            pool, lifetime=timedelta(seconds=settings.mfa_challenge_ttl_seconds)
        ),
        policy=policy,
        limits=AttemptLimits(await _limiter(ctx, settings), window=settings.attempt_window_seconds),
        passkeys=Passkeys(
            pool, ceremony_ttl=timedelta(seconds=settings.webauthn_ceremony_ttl_seconds)
        ),
        oidc_providers=_oidc_providers(ctx, settings),
        oidc_store=oidc_store,
        oidc_users=OidcUsers(accounts, oidc_store),
    )
    verifier = TokenVerifier(KeyRingSource(keys), issuer=settings.issuer, min_refresh_interval=1.0)
    service = AuthServicer(deps, verifier)
    await _grant_configured_admins(deps)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(service, server)

    if settings.run_jobs:
        # Auth owns a database, so it hosts the queue's own `cleanup` job; the
        # coordinator lease keeps it to one replica however many run.
        await start_job_runtime(
            ctx,
            dsn,
            settings.coordinator_endpoints,
            periodic=[cleanup_job],
            migrate=settings.migrate_on_start,
        )
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyServicer(policy, verifier), server)
    if settings.console_port >= 0:
        # Imported only when the console is on: aiohttp's web server is ~0.3 s of
        # start-up that auth without a console never uses.
        from marquee_auth.console import start_console

        console_port = await start_console(ctx, settings.console_port)
        ctx.log.info("dev console", url=f"http://localhost:{console_port}/")
    return [
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    ]


async def _limiter(ctx: ServiceContext, settings: AuthSettings) -> Limiter:
    if settings.redis_url is None:
        ctx.log.warning("no redis_url: attempt limits are counted per auth instance")
        return LocalOnly()
    # Does not wait for Redis: while it is down the limiter decides locally.
    cache = await Cache.connect(str(settings.redis_url), wait_for_tracking=None)
    ctx.on_shutdown(cache.close)
    return RateLimiter(cache.redis, prefix=settings.attempt_key_prefix)


def _oidc_providers(ctx: ServiceContext, settings: AuthSettings) -> dict[str, OidcProvider]:
    # Discovery is fetched at the first login, not here: a provider down at our
    # start must not keep auth down (its logins answer UNAVAILABLE meanwhile).
    providers = {
        name: OidcProvider(
            name,
            config,
            discovery_ttl=settings.oidc_discovery_ttl_seconds,
            timeout=settings.oidc_http_timeout_seconds,
        )
        for name, config in settings.oidc_providers.items()
    }
    for name, config in settings.oidc_providers.items():
        ctx.log.info(
            "OIDC provider configured",
            provider=name,
            discovery_url=config.discovery_url,
            issuer=config.issuer,
            on_first_login=config.on_first_login,
        )
    return providers


async def _grant_configured_admins(deps: AuthDeps) -> None:
    for username in deps.settings.admin_usernames:
        account = await deps.accounts.find_for_login(username)
        if account is not None and account.username.lower() == username.lower():
            await deps.policy.adapter.add_policy("g", "g", [account.id, "admin"])
    await deps.policy.reload()


async def _keep_keys_current(ctx: ServiceContext, keys: KeyRing, settings: AuthSettings) -> None:
    interval = min(KEY_CHECK_SECONDS, settings.signing_key_rotation_seconds / 4)
    while True:
        await asyncio.sleep(interval)
        try:
            await keys.ensure_current()
        except (OSError, asyncpg.PostgresError) as exc:
            # The keys in memory keep signing; the next round tries again.
            ctx.log.warning("signing keys not refreshed", error=str(exc))
