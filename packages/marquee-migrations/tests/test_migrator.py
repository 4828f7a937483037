"""Migrations against a real PostgreSQL: order, rollback, dirty state and its way out (P-3)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from marquee_migrations import (
    DirtyDatabase,
    MigrationFailed,
    MigrationSet,
    Migrator,
    SchemaNotReady,
    migrate_on_start,
)


def write(folder: Path, files: dict[str, str]) -> MigrationSet:
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return MigrationSet.from_directory("shop", folder)


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows} - {"marquee_schema_migrations"}


async def test_migrations_apply_in_version_order_and_only_once(
    scratch_database_url: str, tmp_path: Path
) -> None:
    migrations = write(
        tmp_path,
        {
            "1_items.up.sql": "CREATE TABLE items (id int PRIMARY KEY);",
            "2_price.up.sql": "ALTER TABLE items ADD COLUMN price int;",
            # 10 sorts after 2 as a number, and needs the column 2 adds.
            "10_seed.up.sql": "INSERT INTO items (id, price) VALUES (1, 5);",
        },
    )
    migrator = Migrator(scratch_database_url, migrations)
    assert (await migrator.status()).pending == (1, 2, 10)
    assert await migrator.up() == [1, 2, 10]
    assert await migrator.up() == []
    status = await migrator.status()
    assert (status.version, status.dirty, status.pending) == (10, False, ())


async def test_a_migration_that_fails_midway_leaves_the_last_good_version(
    scratch_database_url: str, tmp_path: Path
) -> None:
    migrations = write(
        tmp_path,
        {
            "1_items.up.sql": "CREATE TABLE items (id int PRIMARY KEY);",
            "2_broken.up.sql": "CREATE TABLE orders (id int);\nSELECT 1 / 0;\n",
        },
    )
    migrator = Migrator(scratch_database_url, migrations)
    with pytest.raises(MigrationFailed, match="rolled back; database stays at version 1") as failed:
        await migrator.up()
    assert not failed.value.dirty
    status = await migrator.status()
    assert (status.version, status.dirty, status.pending) == (1, False, (2,))
    # The first half of 2 was rolled back too.
    assert await tables(scratch_database_url) == {"items"}


async def test_a_broken_no_transaction_migration_is_dirty_and_blocks_further_runs(
    scratch_database_url: str, tmp_path: Path
) -> None:
    migrations = write(
        tmp_path,
        {
            "1_items.up.sql": "CREATE TABLE items (id int PRIMARY KEY, sku text);",
            "2_index.up.sql": (
                "-- marquee: no-transaction\n"
                "CREATE INDEX CONCURRENTLY items_sku ON items (sku);\n"
                "CREATE INDEX CONCURRENTLY orders_item ON orders (item);\n"
            ),
        },
    )
    migrator = Migrator(scratch_database_url, migrations)
    with pytest.raises(MigrationFailed, match="DIRTY at version 2") as failed:
        await migrator.up()
    assert failed.value.dirty
    status = await migrator.status()
    assert (status.version, status.dirty) == (2, True)
    assert status.error is not None
    assert "statement 2 of 2" in status.error
    assert 'relation "orders" does not exist' in status.error
    with pytest.raises(DirtyDatabase, match="dirty at version 2") as dirty:
        await migrator.up()
    assert "marquee migrate force 2 --set shop" in str(dirty.value)
    assert "force 1" in str(dirty.value)


async def test_two_migrators_at_once_apply_each_migration_once(
    scratch_database_url: str, tmp_path: Path
) -> None:
    migrations = write(
        tmp_path,
        {
            "1_slow.up.sql": "SELECT pg_sleep(0.5);\nCREATE TABLE items (id int);",
            "2_more.up.sql": "CREATE TABLE orders (id int);",
        },
    )
    began = time.monotonic()
    first, second = await asyncio.gather(
        Migrator(scratch_database_url, migrations).up(),
        Migrator(scratch_database_url, migrations).up(),
    )
    # One applied both while the other waited on the advisory lock, then found nothing to do
    # (without the lock the loser would fail on CREATE TABLE items).
    assert sorted([first, second]) == [[], [1, 2]]
    assert time.monotonic() - began >= 0.5
    assert await tables(scratch_database_url) == {"items", "orders"}


async def test_migrate_on_start_applies_or_refuses_a_schema_that_is_behind(
    scratch_database_url: str, tmp_path: Path
) -> None:
    migrations = write(tmp_path, {"1_items.up.sql": "CREATE TABLE items (id int);"})
    with pytest.raises(SchemaNotReady, match="marquee migrate up --set shop"):
        await migrate_on_start(scratch_database_url, migrations, apply=False)
    status = await migrate_on_start(scratch_database_url, migrations, apply=True)
    assert status.version == 1
    assert (await migrate_on_start(scratch_database_url, migrations, apply=False)).version == 1


async def test_migrate_on_start_refuses_a_dirty_database(
    scratch_database_url: str, tmp_path: Path
) -> None:
    migrations = write(
        tmp_path,
        {"1_bad.up.sql": "-- marquee: no-transaction\nCREATE TABLE a (id int);\nSELECT 1 / 0;\n"},
    )
    with pytest.raises(MigrationFailed):
        await migrate_on_start(scratch_database_url, migrations, apply=True)
    with pytest.raises(DirtyDatabase, match="dirty at version 1"):
        await migrate_on_start(scratch_database_url, migrations, apply=True)
