"""The MFA challenges a first-factor login answers with: single use, expiring, few tries."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from marquee_auth.db import Connection

# Wrong second-factor answers one challenge takes before it ends.
MAX_FAILED_ATTEMPTS = 5


@dataclass(frozen=True)
class Challenge:
    id: str
    user_id: str
    expires_at: datetime


class ChallengeRefused(Exception):
    """str() says why; the caller answers UNAUTHENTICATED."""


class MfaChallenges:
    def __init__(self, pool: asyncpg.Pool, *, lifetime: timedelta) -> None:
        self._pool = pool
        self._lifetime = lifetime

    async def issue(self, user_id: str) -> Challenge:
        challenge_id = uuid.uuid4()
        expires_at = datetime.now(UTC) + self._lifetime
        await self._pool.execute(
            "INSERT INTO auth_mfa_challenges (id, user_id, expires_at) VALUES ($1, $2, $3)",
            challenge_id,
            uuid.UUID(user_id),
            expires_at,
        )
        return Challenge(str(challenge_id), user_id, expires_at.replace(microsecond=0))

    async def user_of(self, challenge_id: str) -> str:
        """The user a live challenge belongs to (for a WebAuthn second factor's options)."""
        row = await self._pool.fetchrow(
            "SELECT user_id FROM auth_mfa_challenges WHERE id = $1"
            " AND used_at IS NULL AND expires_at > now() AND failed_attempts < $2",
            _uuid(challenge_id),
            MAX_FAILED_ATTEMPTS,
        )
        if row is None:
            raise ChallengeRefused("MFA challenge expired or already used: log in again")
        return str(row["user_id"])

    async def complete(
        self, challenge_id: str, answer: Callable[[Connection, str], Awaitable[bool]]
    ) -> str:
        """Run `answer(conn, user_id)` in the challenge's transaction; the user id if it held.

        A wrong answer is counted (and committed) before ChallengeRefused.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT user_id, expires_at, failed_attempts, used_at"
                " FROM auth_mfa_challenges WHERE id = $1 FOR UPDATE",
                _uuid(challenge_id),
            )
            if (
                row is None
                or row["used_at"] is not None
                or row["expires_at"] <= datetime.now(UTC)
                or row["failed_attempts"] >= MAX_FAILED_ATTEMPTS
            ):
                raise ChallengeRefused("MFA challenge expired or already used: log in again")
            user_id = str(row["user_id"])
            if await answer(conn, user_id):
                await conn.execute(
                    "UPDATE auth_mfa_challenges SET used_at = now() WHERE id = $1",
                    _uuid(challenge_id),
                )
                return user_id
            await conn.execute(
                "UPDATE auth_mfa_challenges SET failed_attempts = failed_attempts + 1"
                " WHERE id = $1",
                _uuid(challenge_id),
            )
        raise ChallengeRefused("wrong or already used code")


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ChallengeRefused("MFA challenge expired or already used: log in again") from None
