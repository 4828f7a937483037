"""Pending OIDC logins and provider-subject links, in PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from marquee_auth.db import Connection


@dataclass(frozen=True)
class PendingLogin:
    provider: str
    redirect_uri: str
    nonce: str
    code_verifier: str


def _state_hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


class OidcStore:
    def __init__(self, pool: asyncpg.Pool, *, login_ttl: timedelta) -> None:
        self._pool = pool
        self._login_ttl = login_ttl

    async def open_login(self, state: str, login: PendingLogin) -> datetime:
        expires_at = datetime.now(UTC) + self._login_ttl
        # Expired logins are worth nothing (take_login refuses them): drop them
        # here, through the expiry index, so abandoned logins do not pile up.
        await self._pool.execute("DELETE FROM auth_oidc_logins WHERE expires_at < now()")
        await self._pool.execute(
            "INSERT INTO auth_oidc_logins"
            " (state_hash, provider, redirect_uri, nonce, code_verifier, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            _state_hash(state),
            login.provider,
            login.redirect_uri,
            login.nonce,
            login.code_verifier,
            expires_at,
        )
        return expires_at

    async def take_login(self, state: str) -> PendingLogin | None:
        """The live pending login of `state`, spent by this call (one UPDATE: a
        replayed or concurrent callback finds it used), or None."""
        row = await self._pool.fetchrow(
            "UPDATE auth_oidc_logins SET used_at = now()"
            " WHERE state_hash = $1 AND used_at IS NULL AND expires_at > now()"
            " RETURNING provider, redirect_uri, nonce, code_verifier",
            _state_hash(state),
        )
        if row is None:
            return None
        return PendingLogin(
            row["provider"], row["redirect_uri"], row["nonce"], row["code_verifier"]
        )

    async def linked_user(self, provider: str, subject: str) -> str | None:
        user_id = await self._pool.fetchval(
            "UPDATE auth_oidc_links SET last_login_at = now()"
            " WHERE provider = $1 AND subject = $2 RETURNING user_id",
            provider,
            subject,
        )
        return str(user_id) if user_id is not None else None

    async def has_link(self, conn: Connection, provider: str, user_id: str) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT true FROM auth_oidc_links WHERE provider = $1 AND user_id = $2",
                provider,
                uuid.UUID(user_id),
            )
        )

    async def link(self, conn: Connection, provider: str, subject: str, user_id: str) -> None:
        """Link in the caller's transaction; UniqueViolationError if either side is taken."""
        await conn.execute(
            "INSERT INTO auth_oidc_links (provider, subject, user_id, last_login_at)"
            " VALUES ($1, $2, $3, now())",
            provider,
            subject,
            uuid.UUID(user_id),
        )
