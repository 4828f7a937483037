"""Stored passkeys (WebAuthn credentials) and the server side of their ceremonies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from marquee_auth.db import Connection


@dataclass(frozen=True)
class StoredCredential:
    id: bytes
    user_id: str
    public_key: bytes
    sign_count: int
    transports: list[str]
    nickname: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Ceremony:
    id: str
    kind: str
    user_id: str | None
    mfa_challenge_id: str | None
    challenge: bytes
    nickname: str


class CredentialTaken(Exception):
    """The authenticator's credential id is registered already."""


def _credential(row: asyncpg.Record) -> StoredCredential:
    return StoredCredential(
        id=bytes(row["id"]),
        user_id=str(row["user_id"]),
        public_key=bytes(row["public_key"]),
        sign_count=row["sign_count"],
        transports=list(row["transports"]),
        nickname=row["nickname"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


class Passkeys:
    def __init__(self, pool: asyncpg.Pool, *, ceremony_ttl: timedelta) -> None:
        self._pool = pool
        self._ceremony_ttl = ceremony_ttl

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def of_user(self, user_id: str) -> list[StoredCredential]:
        rows = await self._pool.fetch(
            "SELECT * FROM auth_webauthn_credentials WHERE user_id = $1 ORDER BY created_at",
            uuid.UUID(user_id),
        )
        return [_credential(row) for row in rows]

    async def find(self, credential_id: bytes) -> StoredCredential | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM auth_webauthn_credentials WHERE id = $1", credential_id
        )
        return _credential(row) if row is not None else None

    async def add(
        self,
        user_id: str,
        credential_id: bytes,
        public_key: bytes,
        sign_count: int,
        transports: list[str],
        nickname: str,
    ) -> StoredCredential:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO auth_webauthn_credentials"
                " (id, user_id, public_key, sign_count, transports, nickname)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                credential_id,
                uuid.UUID(user_id),
                public_key,
                sign_count,
                transports,
                nickname,
            )
        except asyncpg.UniqueViolationError:
            raise CredentialTaken from None
        assert row is not None
        return _credential(row)

    async def record_use(self, conn: Connection, credential_id: bytes, sign_count: int) -> bool:
        """Store the new counter, refusing one that went backwards since we read it."""
        updated = await conn.fetchval(
            "UPDATE auth_webauthn_credentials SET sign_count = $2, last_used_at = now()"
            " WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))"
            " RETURNING true",
            credential_id,
            sign_count,
        )
        return bool(updated)

    async def open_ceremony(
        self,
        kind: str,
        challenge: bytes,
        *,
        user_id: str | None = None,
        mfa_challenge_id: str | None = None,
        nickname: str = "",
    ) -> str:
        ceremony_id = uuid.uuid4()
        await self._pool.execute(
            "INSERT INTO auth_webauthn_ceremonies"
            " (id, kind, user_id, mfa_challenge_id, challenge, nickname, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ceremony_id,
            kind,
            uuid.UUID(user_id) if user_id else None,
            uuid.UUID(mfa_challenge_id) if mfa_challenge_id else None,
            challenge,
            nickname,
            datetime.now(UTC) + self._ceremony_ttl,
        )
        return str(ceremony_id)

    async def take_ceremony(self, ceremony_id: str, kind: str) -> Ceremony | None:
        """The live ceremony, spent by this call (single use), or None."""
        try:
            key = uuid.UUID(ceremony_id)
        except ValueError:
            return None
        row = await self._pool.fetchrow(
            "UPDATE auth_webauthn_ceremonies SET used_at = now()"
            " WHERE id = $1 AND kind = $2 AND used_at IS NULL AND expires_at > now()"
            " RETURNING id, kind, user_id, mfa_challenge_id, challenge, nickname",
            key,
            kind,
        )
        if row is None:
            return None
        return Ceremony(
            id=str(row["id"]),
            kind=row["kind"],
            user_id=str(row["user_id"]) if row["user_id"] else None,
            mfa_challenge_id=str(row["mfa_challenge_id"]) if row["mfa_challenge_id"] else None,
            challenge=bytes(row["challenge"]),
            nickname=row["nickname"],
        )
