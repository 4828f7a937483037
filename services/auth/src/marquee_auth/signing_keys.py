"""The keys that sign access tokens: generated, stored encrypted, rotated, published.

Ed25519 (JOSE alg "Ed25519", RFC 9864). The newest unretired key signs. On
rotation the old key is retired but stays published until every token it
signed has expired, so verifiers that refresh on an unknown key id never
reject a token that is still valid. Replicas share the keys through the
database: rotation takes an advisory lock so only one of them makes a key,
and each replica re-reads the keys periodically.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from joserfc.jwk import KeySet, OKPKey

from marquee_auth.db import Connection
from marquee_auth.secret_box import SecretBox
from marquee_authn import ACCESS_TOKEN_ALGORITHM

# pg_advisory_xact_lock key: "mq-auth-keys" folded into a bigint.
_ROTATION_LOCK = 0x6D715F6B657973


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: OKPKey
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None


class KeyRing:
    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox,
        *,
        rotation: timedelta,
        token_lifetime: timedelta,
    ) -> None:
        self._pool = pool
        self._box = box
        self._rotation = rotation
        # A retired key is published while tokens it signed can still be valid. A
        # replica may go on signing with it until its next key check (a minute).
        self._publish_after_retirement = token_lifetime + timedelta(minutes=5)
        self._keys: list[SigningKey] = []
        self._lock = asyncio.Lock()

    @property
    def current(self) -> SigningKey:
        for key in self._keys:
            if key.retired_at is None:
                return key
        raise RuntimeError("no signing key loaded: call ensure_current() first")

    def published(self) -> list[dict[str, Any]]:
        return [key.public_jwk for key in self._keys]

    def key_set(self) -> KeySet:
        return KeySet([OKPKey.import_key(jwk) for jwk in self.published()])

    async def ensure_current(self, *, force_rotation: bool = False) -> None:
        """Load the keys; make a new one if there is none, or the newest is due for rotation."""
        async with self._lock, self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ROTATION_LOCK)
            keys = await self._read(conn)
            newest = next((k for k in keys if k.retired_at is None), None)
            due = newest is None or datetime.now(UTC) - newest.created_at >= self._rotation
            if due or force_rotation:
                await conn.execute(
                    "UPDATE auth_signing_keys SET retired_at = now() WHERE retired_at IS NULL"
                )
                await self._insert_new(conn)
                keys = await self._read(conn)
            self._keys = keys

    async def reload(self) -> None:
        async with self._lock, self._pool.acquire() as conn:
            keys = await self._read(conn)
        if any(k.retired_at is None for k in keys):
            self._keys = keys

    async def _insert_new(self, conn: Connection) -> None:
        kid = secrets.token_urlsafe(12)
        private = OKPKey.generate_key(
            "Ed25519",
            parameters={"kid": kid, "use": "sig", "alg": ACCESS_TOKEN_ALGORITHM},
            private=True,
        )
        await conn.execute(
            "INSERT INTO auth_signing_keys (kid, algorithm, public_jwk, private_key_encrypted)"
            " VALUES ($1, $2, $3, $4)",
            kid,
            ACCESS_TOKEN_ALGORITHM,
            json.dumps(private.as_dict(private=False)),
            self._box.seal(private.as_pem(private=True), f"signing-key:{kid}"),
        )

    async def _read(self, conn: Connection) -> list[SigningKey]:
        rows = await conn.fetch(
            "SELECT kid, public_jwk, private_key_encrypted, created_at, retired_at"
            " FROM auth_signing_keys"
            " WHERE retired_at IS NULL OR retired_at > now() - $1::interval"
            " ORDER BY created_at DESC",
            self._publish_after_retirement,
        )
        keys = []
        for row in rows:
            kid = row["kid"]
            pem = self._box.open(row["private_key_encrypted"], f"signing-key:{kid}")
            keys.append(
                SigningKey(
                    kid=kid,
                    private=OKPKey.import_key(pem, parameters={"kid": kid}),
                    public_jwk=json.loads(row["public_jwk"]),
                    created_at=row["created_at"],
                    retired_at=row["retired_at"],
                )
            )
        return keys
