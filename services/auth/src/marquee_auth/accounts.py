"""Users and their password credentials in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from marquee_auth.db import Connection


class UsernameTaken(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is already taken")
        self.field = field


@dataclass(frozen=True)
class SecondFactors:
    """Which second factors a user has: any of them means MFA at login."""

    totp: bool
    recovery_codes: bool  # unused ones; they stand in for TOTP only
    passkeys: bool


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    email: str
    display_name: str
    created_at: datetime
    password_hash: str | None
    failed_logins: int
    locked_until: datetime | None
    # Read with the account by find_for_login only (None elsewhere): a login then
    # needs no query of its own to know whether it must ask for a second factor.
    second_factors: SecondFactors | None = None


_COLUMNS = (
    "u.id, u.username, u.email, u.display_name, u.created_at, u.failed_logins,"
    " u.locked_until, p.hash AS password_hash"
)
_FROM = " FROM auth_users u LEFT JOIN auth_password_credentials p ON p.user_id = u.id"
_SELECT = "SELECT " + _COLUMNS + _FROM


# The three flags of SecondFactors for the user `{id}`: u.id with the account, or $1.
_FACTOR_COLUMNS = (
    "EXISTS (SELECT 1 FROM auth_totp t WHERE t.user_id = {id} AND t.secret_sealed IS NOT NULL)"
    " AS has_totp,"
    " EXISTS (SELECT 1 FROM auth_recovery_codes r WHERE r.user_id = {id} AND r.used_at IS NULL)"
    " AS has_recovery_codes,"
    " EXISTS (SELECT 1 FROM auth_webauthn_credentials w WHERE w.user_id = {id}) AS has_passkeys"
)
_SECOND_FACTORS = "SELECT " + _FACTOR_COLUMNS.format(id="$1")
_FIND_FOR_LOGIN = (
    f"SELECT {_COLUMNS}, {_FACTOR_COLUMNS.format(id='u.id')}{_FROM}"
    " WHERE lower(u.username) = lower($1) OR lower(u.email) = lower($1)"
    " ORDER BY lower(u.username) = lower($1) DESC LIMIT 1"
)


def _second_factors(row: asyncpg.Record) -> SecondFactors:
    return SecondFactors(
        totp=row["has_totp"], recovery_codes=row["has_recovery_codes"], passkeys=row["has_passkeys"]
    )


def _account(row: asyncpg.Record, *, with_factors: bool = False) -> Account:
    return Account(
        id=str(row["id"]),
        username=row["username"],
        email=row["email"],
        display_name=row["display_name"],
        created_at=row["created_at"],
        password_hash=row["password_hash"],
        failed_logins=row["failed_logins"],
        locked_until=row["locked_until"],
        second_factors=_second_factors(row) if with_factors else None,
    )


class Accounts:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def create(
        self, username: str, email: str, display_name: str, password_hash: str
    ) -> Account:
        user_id = uuid.uuid4()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO auth_users (id, username, email, display_name)"
                    " VALUES ($1, $2, $3, $4)",
                    user_id,
                    username,
                    email,
                    display_name,
                )
                await conn.execute(
                    "INSERT INTO auth_password_credentials (user_id, hash) VALUES ($1, $2)",
                    user_id,
                    password_hash,
                )
                row = await conn.fetchrow(_SELECT + " WHERE u.id = $1", user_id)
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "username"
            raise UsernameTaken(field) from None
        assert row is not None
        return _account(row)

    async def insert_without_password(
        self, conn: Connection, username: str, email: str, display_name: str
    ) -> str:
        """A user who logs in through a provider only: no password credential row,
        so no password ever matches (Login checks such a user against the dummy hash)."""
        user_id = uuid.uuid4()
        try:
            await conn.execute(
                "INSERT INTO auth_users (id, username, email, display_name)"
                " VALUES ($1, $2, $3, $4)",
                user_id,
                username,
                email,
                display_name,
            )
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "username"
            raise UsernameTaken(field) from None
        return str(user_id)

    async def find_by_email(self, email: str) -> Account | None:
        row = await self._pool.fetchrow(_SELECT + " WHERE lower(u.email) = lower($1)", email)
        return _account(row) if row is not None else None

    async def find_for_login(self, name: str) -> Account | None:
        """The account whose username or email is `name`, case-insensitively."""
        row = await self._pool.fetchrow(_FIND_FOR_LOGIN, name)
        return _account(row, with_factors=True) if row is not None else None

    async def second_factors(self, user_id: str) -> SecondFactors:
        row = await self._pool.fetchrow(_SECOND_FACTORS, uuid.UUID(user_id))
        assert row is not None  # a SELECT without FROM always answers one row
        return _second_factors(row)

    async def get(self, user_id: str) -> Account | None:
        row = await self._pool.fetchrow(_SELECT + " WHERE u.id = $1", uuid.UUID(user_id))
        return _account(row) if row is not None else None

    async def record_failure(
        self,
        user_id: str,
        *,
        threshold: int,
        lockout: timedelta,
        backoff_after: int,
        backoff_base: timedelta,
    ) -> datetime | None:
        """Count a wrong password; returns until when the account is now locked, if it is.

        One statement, so concurrent failures each count.
        """
        row = await self._pool.fetchrow(
            """
            UPDATE auth_users SET
              failed_logins = failed_logins + 1,
              locked_until = CASE
                WHEN failed_logins + 1 >= $2 THEN now() + $3::interval
                WHEN failed_logins + 1 >= $4 THEN now() + least(
                    $5::interval * power(2, failed_logins + 1 - $4), $3::interval)
                ELSE locked_until
              END
            WHERE id = $1
            RETURNING locked_until
            """,
            uuid.UUID(user_id),
            threshold,
            lockout,
            backoff_after,
            backoff_base,
        )
        return row["locked_until"] if row is not None else None

    async def record_success(self, account: Account, new_hash: str | None) -> None:
        """Clear the failure count and any backoff, and store a rehashed password.

        Nothing is written when there is nothing to change (the usual login):
        each write is a commit PostgreSQL makes on the CPU argon2 hashes on.
        A failure counted by a concurrent wrong guess after `account` was read
        then stays counted, which errs on the safe side. Otherwise one statement,
        so one commit, whichever of the two it changes.
        """
        clear = bool(account.failed_logins) or account.locked_until is not None
        if not clear and new_hash is None:
            return
        await self._pool.execute(
            "WITH cleared AS ("
            " UPDATE auth_users SET failed_logins = 0, locked_until = NULL"
            " WHERE id = $1 AND $3)"
            " UPDATE auth_password_credentials SET hash = $2, updated_at = now()"
            " WHERE user_id = $1 AND $2::text IS NOT NULL",
            uuid.UUID(account.id),
            new_hash,
            clear,
        )
