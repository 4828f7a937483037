"""Moving every sealed secret to the current encryption key after it changed."""

from __future__ import annotations

import asyncpg

from marquee_auth.secret_box import SecretBox

# (table, key column, sealed column, purpose prefix): every column that holds a
# sealed value, with the purpose it was sealed for (see SecretBox).
SEALED_COLUMNS = (
    ("auth_signing_keys", "kid", "private_key_encrypted", "signing-key:"),
    ("auth_totp", "user_id", "secret_sealed", "totp:"),
    ("auth_totp", "user_id", "pending_secret_sealed", "totp:"),
)


async def reseal_all(pool: asyncpg.Pool, box: SecretBox) -> int:
    """Seal again, under the current key, every value a previous key sealed; how many.

    One transaction: a replica starting at the same time waits, and a failure
    leaves every value as it was (still readable with the previous keys).
    """
    moved = 0
    async with pool.acquire() as conn, conn.transaction():
        for table, key, column, prefix in SEALED_COLUMNS:
            rows = await conn.fetch(
                f"SELECT {key} AS key, {column} AS sealed FROM {table}"  # noqa: S608  # nosec B608
                f" WHERE {column} IS NOT NULL FOR UPDATE"
            )
            for row in rows:
                resealed = box.reseal(bytes(row["sealed"]), f"{prefix}{row['key']}")
                if resealed is not None:
                    await conn.execute(
                        f"UPDATE {table} SET {column} = $2 WHERE {key} = $1",  # noqa: S608  # nosec B608
                        row["key"],
                        resealed,
                    )
                    moved += 1
    return moved
