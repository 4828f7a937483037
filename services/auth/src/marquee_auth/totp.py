"""TOTP second factors (pyotp): enrolment, confirmation, replay-proof checks, recovery codes.

A code is accepted for the current time step or one step either side. The
step it matched is stored in the same UPDATE that checks it is newer than the
last accepted one, so two concurrent checks of one code cannot both pass.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pyotp
from pyotp.utils import strings_equal

from marquee_auth.db import Connection
from marquee_auth.secret_box import SecretBox

RECOVERY_CODES = 10
VALID_WINDOW = 1


class TotpProblem(Exception):
    """An enrolment step that cannot go on; str() says why."""


@dataclass(frozen=True)
class Enrollment:
    secret: str
    provisioning_uri: str
    expires_at: datetime


def normalize_recovery_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch not in "- ")


def _recovery_hash(code: str) -> bytes:
    return hashlib.sha256(normalize_recovery_code(code).encode()).digest()


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 characters
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def matching_step(secret: str, code: str) -> int | None:
    """The time step `code` belongs to, within one step of now, or None."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(datetime.now(UTC))
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if strings_equal(code, totp.generate_otp(step)):
            return step
    return None


class Totp:
    def __init__(
        self, pool: asyncpg.Pool, box: SecretBox, *, issuer_name: str, enrollment_ttl: timedelta
    ) -> None:
        self._pool = pool
        self._box = box
        self._issuer_name = issuer_name
        self._enrollment_ttl = enrollment_ttl

    def _purpose(self, user_id: str) -> str:
        return f"totp:{user_id}"

    async def is_active(self, user_id: str) -> bool:
        active = await self._pool.fetchval(
            "SELECT secret_sealed IS NOT NULL FROM auth_totp WHERE user_id = $1",
            uuid.UUID(user_id),
        )
        return bool(active)

    async def begin_enrollment(self, user_id: str, account_name: str) -> Enrollment:
        """A new pending secret; the caller has checked the current factor if there is one."""
        secret = pyotp.random_base32()
        expires_at = datetime.now(UTC) + self._enrollment_ttl
        await self._pool.execute(
            "INSERT INTO auth_totp (user_id, pending_secret_sealed, pending_expires_at)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE"
            " SET pending_secret_sealed = excluded.pending_secret_sealed,"
            " pending_expires_at = excluded.pending_expires_at",
            uuid.UUID(user_id),
            self._box.seal(secret.encode(), self._purpose(user_id)),
            expires_at,
        )
        uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=self._issuer_name)
        return Enrollment(secret, uri, expires_at.replace(microsecond=0))

    async def confirm(self, user_id: str, code: str) -> list[str]:
        """Activate the pending secret with a code from it; the new recovery codes."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT pending_secret_sealed, pending_expires_at FROM auth_totp"
                " WHERE user_id = $1 FOR UPDATE",
                uuid.UUID(user_id),
            )
            if row is None or row["pending_secret_sealed"] is None:
                raise TotpProblem("no TOTP enrolment is pending: call EnrollTotp first")
            if row["pending_expires_at"] <= datetime.now(UTC):
                raise TotpProblem("the TOTP enrolment expired: call EnrollTotp again")
            sealed = row["pending_secret_sealed"]
            secret = self._box.open(sealed, self._purpose(user_id)).decode()
            step = matching_step(secret, code)
            if step is None:
                raise TotpProblem("the code does not match the secret from EnrollTotp")
            await conn.execute(
                "UPDATE auth_totp SET secret_sealed = $2, confirmed_at = now(), last_step = $3,"
                " pending_secret_sealed = NULL, pending_expires_at = NULL WHERE user_id = $1",
                uuid.UUID(user_id),
                sealed,
                step,
            )
            codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
            await conn.execute(
                "DELETE FROM auth_recovery_codes WHERE user_id = $1", uuid.UUID(user_id)
            )
            await conn.executemany(
                "INSERT INTO auth_recovery_codes (code_hash, user_id) VALUES ($1, $2)",
                [(_recovery_hash(c), uuid.UUID(user_id)) for c in codes],
            )
        return codes

    async def accept_code(self, conn: Connection, user_id: str, code: str) -> bool:
        """True if `code` is valid and its step newer than any accepted before (then stored)."""
        sealed = await conn.fetchval(
            "SELECT secret_sealed FROM auth_totp WHERE user_id = $1", uuid.UUID(user_id)
        )
        if sealed is None:
            return False
        step = matching_step(self._box.open(sealed, self._purpose(user_id)).decode(), code)
        if step is None:
            return False
        accepted = await conn.fetchval(
            "UPDATE auth_totp SET last_step = $2 WHERE user_id = $1"
            " AND secret_sealed IS NOT NULL AND (last_step IS NULL OR last_step < $2)"
            " RETURNING true",
            uuid.UUID(user_id),
            step,
        )
        return bool(accepted)

    async def accept_recovery_code(self, conn: Connection, user_id: str, code: str) -> bool:
        used = await conn.fetchval(
            "UPDATE auth_recovery_codes SET used_at = now()"
            " WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL RETURNING true",
            _recovery_hash(code),
            uuid.UUID(user_id),
        )
        return bool(used)
