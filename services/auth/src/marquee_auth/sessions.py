"""Sessions and their rotating refresh tokens.

Each login opens a session; its refresh tokens form a family. Refresh spends
the presented token and issues the next one in the same transaction. A spent
token presented again means two parties hold the family (one of them stole
it): the whole session is revoked, and both have to log in again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

import asyncpg

from marquee_auth.db import Connection
from marquee_auth.tokens import new_refresh_token, refresh_token_hash


@dataclass(frozen=True)
class IssuedRefresh:
    session_id: str
    user_id: str
    token: str
    expires_at: datetime


class RefreshRefusal(Enum):
    UNKNOWN = "refresh token not recognised"
    EXPIRED = "refresh token expired"
    REVOKED = "session has ended"
    REUSED = "refresh token was already used: the session is revoked, log in again"


class RefreshRefused(Exception):
    def __init__(self, reason: RefreshRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Sessions:
    def __init__(self, pool: asyncpg.Pool, *, lifetime: timedelta) -> None:
        self._pool = pool
        self._lifetime = lifetime

    async def open(self, user_id: str) -> IssuedRefresh:
        session_id = uuid.uuid4()
        expires_at = datetime.now(UTC) + self._lifetime
        token = new_refresh_token()
        # One statement, so one round trip and one commit, and atomic as a whole.
        await self._pool.execute(
            "WITH opened AS ("
            " INSERT INTO auth_sessions (id, user_id, expires_at) VALUES ($1, $2, $3)"
            " RETURNING id)"
            " INSERT INTO auth_refresh_tokens (token_hash, session_id, expires_at)"
            " SELECT $4, id, $3 FROM opened",
            session_id,
            uuid.UUID(user_id),
            expires_at,
            refresh_token_hash(token),
        )
        return IssuedRefresh(str(session_id), user_id, token, expires_at)

    async def rotate(self, token: str) -> IssuedRefresh:
        """Spend `token` and issue the next of its family; RefreshRefused says why not."""
        async with self._pool.acquire() as conn:
            refusal: RefreshRefusal | None = None
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT t.spent_at, t.expires_at, s.id AS session_id, s.user_id,"
                    " s.revoked_at, s.expires_at AS session_expires_at"
                    " FROM auth_refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id"
                    " WHERE t.token_hash = $1 FOR UPDATE OF t, s",
                    refresh_token_hash(token),
                )
                now = datetime.now(UTC)
                if row is None:
                    refusal = RefreshRefusal.UNKNOWN
                elif row["revoked_at"] is not None:
                    refusal = RefreshRefusal.REVOKED
                elif row["spent_at"] is not None:
                    await self._revoke(conn, row["session_id"], "refresh token reuse")
                    refusal = RefreshRefusal.REUSED
                elif row["expires_at"] <= now:
                    refusal = RefreshRefusal.EXPIRED
                else:
                    next_token = new_refresh_token()
                    await conn.execute(
                        "UPDATE auth_refresh_tokens SET spent_at = now() WHERE token_hash = $1",
                        refresh_token_hash(token),
                    )
                    await conn.execute(
                        "INSERT INTO auth_refresh_tokens (token_hash, session_id, expires_at)"
                        " VALUES ($1, $2, $3)",
                        refresh_token_hash(next_token),
                        row["session_id"],
                        row["session_expires_at"],
                    )
                    return IssuedRefresh(
                        str(row["session_id"]),
                        str(row["user_id"]),
                        next_token,
                        row["session_expires_at"],
                    )
        raise RefreshRefused(refusal)

    async def revoke_by_refresh_token(self, token: str, *, all_of_user: bool) -> int:
        row = await self._pool.fetchrow(
            "SELECT s.id, s.user_id FROM auth_refresh_tokens t"
            " JOIN auth_sessions s ON s.id = t.session_id WHERE t.token_hash = $1",
            refresh_token_hash(token),
        )
        if row is None:
            return 0
        if all_of_user:
            return await self.revoke_all(str(row["user_id"]))
        return await self.revoke(str(row["id"]))

    async def revoke(self, session_id: str) -> int:
        async with self._pool.acquire() as conn:
            return await self._revoke(conn, uuid.UUID(session_id), "logout")

    async def revoke_all(self, user_id: str) -> int:
        result = await self._pool.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'logout all'"
            " WHERE user_id = $1 AND revoked_at IS NULL",
            uuid.UUID(user_id),
        )
        return _updated(result)

    async def is_active(self, session_id: str) -> bool:
        active = await self._pool.fetchval(
            "SELECT revoked_at IS NULL AND expires_at > now() FROM auth_sessions WHERE id = $1",
            uuid.UUID(session_id),
        )
        return bool(active)

    @staticmethod
    async def _revoke(conn: Connection, session_id: uuid.UUID, reason: str) -> int:
        result = await conn.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2"
            " WHERE id = $1 AND revoked_at IS NULL",
            session_id,
            reason,
        )
        return _updated(result)


def _updated(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 3".
    return int(status.rsplit(" ", 1)[-1])
