"""Apply, revert and force migrations, one migrator per set at a time.

Each migrator holds a session-level advisory lock on its set for its whole run,
so replicas starting together apply every migration exactly once: the second one
waits, then finds nothing left to do. A transactional migration and its version
bump commit together, so a failure leaves the last good version. A no-transaction
migration is recorded dirty *before* it starts and clean once it ends, so a
crash or an error in the middle is visible with its exact version.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from marquee_migrations.errors import (
    DirtyDatabase,
    LockTimeout,
    MigrationError,
    MigrationFailed,
    UnknownVersion,
)
from marquee_migrations.files import Migration, MigrationSet, Script

log = logging.getLogger(__name__)

TABLE = "marquee_schema_migrations"
# Advisory locks share one key space per database: this first key ("MQ") keeps
# ours apart from anyone else's; the second is the hash of the set's name.
LOCK_CLASS = 0x4D51
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS marquee_schema_migrations (
    name text PRIMARY KEY,
    version bigint NOT NULL,
    dirty boolean NOT NULL,
    error text,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""
READ_STATE = "SELECT version, dirty, error FROM marquee_schema_migrations WHERE name = $1"
WRITE_STATE = """INSERT INTO marquee_schema_migrations (name, version, dirty, error)
VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, dirty = EXCLUDED.dirty,
    error = EXCLUDED.error, updated_at = now()"""


@dataclass(frozen=True)
class Status:
    name: str
    version: int
    dirty: bool
    error: str | None
    latest: int
    pending: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "version": self.version,
            "dirty": self.dirty,
            "error": self.error,
            "latest": self.latest,
            "pending": list(self.pending),
        }


@dataclass(frozen=True)
class _State:
    version: int
    dirty: bool
    error: str | None


class Migrator:
    """Migrates one set on the database at `dsn`; each call opens its own connection."""

    def __init__(self, dsn: str, migrations: MigrationSet, *, lock_timeout: float = 300.0) -> None:
        self.dsn = dsn
        self.migrations = migrations
        self.lock_timeout = lock_timeout

    @property
    def name(self) -> str:
        return self.migrations.name

    async def status(self) -> Status:
        conn = await asyncpg.connect(self.dsn)
        try:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
            state = await self._read(conn) if exists else _State(0, False, None)
        finally:
            await conn.close()
        return self._status(state)

    async def up(self, target: int | None = None) -> list[int]:
        """Apply every pending migration (up to `target`); returns the versions applied."""
        if target is not None and not self.migrations.knows(target):
            raise MigrationError(f"{self.name}: no migration with version {target}")
        applied = []
        async with self._locked() as conn:
            state = await self._read(conn)
            self._refuse_dirty(state)
            for migration in self.migrations.after(state.version):
                if target is not None and migration.version > target:
                    break
                await self._run(conn, migration, "up", migration.up, state.version)
                applied.append(migration.version)
                state = _State(migration.version, False, None)
        return applied

    async def down(self, steps: int = 1) -> list[int]:
        """Revert the last `steps` migrations; returns the versions reverted.

        On a dirty database this runs the down script of the dirty migration (it
        must cope with a half-applied up: write it with IF EXISTS) — the one way
        out that needs no hand-editing of the schema.
        """
        reverted = []
        async with self._locked() as conn:
            state = await self._read(conn)
            version = state.version
            for _ in range(steps):
                if version == 0:
                    break
                migration = self.migrations.get(version)
                if migration.down is None:
                    raise MigrationError(
                        f"{self.name}: migration {migration.label} has no down file"
                    )
                previous = self.migrations.previous(version)
                # A dirty migration's down starts from "half of `version`": a failure
                # there keeps it dirty at `version`, never pretends it is at `previous`.
                await self._run(conn, migration, "down", migration.down, version)
                reverted.append(version)
                version = previous
        return reverted

    async def force(self, version: int) -> Status:
        """Record `version` as applied and clean without running anything (after a manual fix)."""
        if not self.migrations.knows(version):
            raise MigrationError(f"{self.name}: no migration with version {version}")
        async with self._locked() as conn:
            before = await self._read(conn)
            await self._write(conn, version, dirty=False, error=None)
        log.warning(
            "%s: forced version %d (was %d, dirty=%s)",
            self.name,
            version,
            before.version,
            before.dirty,
        )
        return self._status(_State(version, False, None))

    # -- internals --------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(self.dsn)
        try:
            try:
                await conn.execute(
                    "SELECT pg_advisory_lock($1, hashtext($2))",
                    LOCK_CLASS,
                    self.name,
                    timeout=self.lock_timeout,
                )
            except TimeoutError:
                raise LockTimeout(self.name, self.lock_timeout) from None
            # Sets of different services create the shared table: a transaction-level
            # lock on one key stops two CREATE TABLE IF NOT EXISTS from racing.
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS)
                await conn.execute(CREATE_TABLE)
            yield conn
        finally:
            # Closing the session releases the advisory lock even if unlock never ran.
            await conn.close()

    async def _run(
        self,
        conn: asyncpg.Connection,
        migration: Migration,
        direction: str,
        script: Script,
        start: int,
    ) -> None:
        target = (
            migration.version if direction == "up" else self.migrations.previous(migration.version)
        )
        log.info("%s: migrating %s %s", self.name, migration.label, direction)
        if script.transactional:
            try:
                async with conn.transaction():
                    await conn.execute(script.sql)
                    await self._write(conn, target, dirty=False, error=None)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise MigrationFailed(
                    self.name, migration.label, direction, _describe(exc), at=start, dirty=False
                ) from exc
            return
        await self._write(
            conn, migration.version, dirty=True, error=f"{direction} started and did not finish"
        )
        statements = script.statements()
        for number, statement in enumerate(statements, 1):
            try:
                await conn.execute(statement)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                cause = f"statement {number} of {len(statements)}: {_describe(exc)}"
                await self._write(
                    conn, migration.version, dirty=True, error=f"{direction}: {cause}"
                )
                raise MigrationFailed(
                    self.name, migration.label, direction, cause, at=migration.version, dirty=True
                ) from exc
        await self._write(conn, target, dirty=False, error=None)

    async def _read(self, conn: asyncpg.Connection) -> _State:
        row = await conn.fetchrow(READ_STATE, self.name)
        if row is None:
            return _State(0, False, None)
        return _State(row["version"], row["dirty"], row["error"])

    async def _write(
        self, conn: asyncpg.Connection, version: int, *, dirty: bool, error: str | None
    ) -> None:
        await conn.execute(WRITE_STATE, self.name, version, dirty, error)

    def _refuse_dirty(self, state: _State) -> None:
        if state.dirty:
            raise DirtyDatabase(
                self.name, state.version, self.migrations.previous(state.version), state.error
            )
        if not self.migrations.knows(state.version):
            raise UnknownVersion(self.name, state.version, self.migrations.latest)

    def _status(self, state: _State) -> Status:
        pending = (
            () if state.dirty else tuple(m.version for m in self.migrations.after(state.version))
        )
        return Status(
            name=self.name,
            version=state.version,
            dirty=state.dirty,
            error=state.error,
            latest=self.migrations.latest,
            pending=pending,
        )


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")
