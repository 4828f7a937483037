"""A pycasbin async adapter on asyncpg.

Saving the whole policy is one transaction, so no instance ever reads a
moment without rules. Removing a rule matches every field exactly, empty ones
included (the adapter of the system this replaces treated an empty field as
"any" and over-deleted). Filtered removal follows Casbin: an empty filter
value matches any value in that field. Every change NOTIFYs `CHANNEL` in its
transaction, so other instances reload once it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from casbin.model import Model
from casbin.persist.adapters.asyncio import AsyncAdapter

from marquee_auth.db import Connection

CHANNEL = "marquee_auth_policy"
FIELDS = 6


def _padded(rule: Sequence[str]) -> list[str]:
    if len(rule) > FIELDS:
        raise ValueError(f"a rule has at most {FIELDS} fields, not {len(rule)}")
    return [*rule, *([""] * (FIELDS - len(rule)))]


def _trimmed(row: asyncpg.Record) -> list[str]:
    values = [row[f"v{i}"] for i in range(FIELDS)]
    while values and values[-1] == "":
        values.pop()
    return values


class AsyncpgAdapter(AsyncAdapter):  # type: ignore[misc]
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def rules(self) -> list[tuple[str, list[str]]]:
        rows = await self._pool.fetch(
            "SELECT ptype, v0, v1, v2, v3, v4, v5 FROM auth_casbin_rules ORDER BY id"
        )
        return [(row["ptype"], _trimmed(row)) for row in rows]

    async def load_policy(self, model: Model) -> None:
        for ptype, values in await self.rules():
            model.add_policy(ptype[0], ptype, values)

    async def save_policy(self, model: Model) -> bool:
        rows = [
            (ptype, *_padded(rule))
            for sec in ("p", "g")
            for ptype, assertion in model.model.get(sec, {}).items()
            for rule in assertion.policy
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM auth_casbin_rules")
            await conn.executemany(
                "INSERT INTO auth_casbin_rules (ptype, v0, v1, v2, v3, v4, v5)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                rows,
            )
            await _notify(conn)
        return True

    async def add_policy(self, sec: str, ptype: str, rule: Sequence[str]) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            added = await conn.fetchval(
                "INSERT INTO auth_casbin_rules (ptype, v0, v1, v2, v3, v4, v5)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true",
                ptype,
                *_padded(rule),
            )
            if added:
                await _notify(conn)
        return bool(added)

    async def remove_policy(self, sec: str, ptype: str, rule: Sequence[str]) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            removed = await conn.execute(
                "DELETE FROM auth_casbin_rules WHERE ptype = $1 AND v0 = $2 AND v1 = $3"
                " AND v2 = $4 AND v3 = $5 AND v4 = $6 AND v5 = $7",
                ptype,
                *_padded(rule),
            )
            count = int(removed.rsplit(" ", 1)[-1])
            if count:
                await _notify(conn)
        return count > 0

    async def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> bool:
        if field_index < 0 or field_index + len(field_values) > FIELDS:
            raise ValueError("filter reaches past the rule's fields")
        conditions = ["ptype = $1"]
        args: list[Any] = [ptype]
        for offset, value in enumerate(field_values):
            if value != "":
                args.append(value)
                conditions.append(f"v{field_index + offset} = ${len(args)}")
        async with self._pool.acquire() as conn, conn.transaction():
            removed = await conn.execute(
                "DELETE FROM auth_casbin_rules WHERE " + " AND ".join(conditions),  # noqa: S608  # nosec B608
                *args,
            )
            count = int(removed.rsplit(" ", 1)[-1])
            if count:
                await _notify(conn)
        return count > 0


async def _notify(conn: Connection) -> None:
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
