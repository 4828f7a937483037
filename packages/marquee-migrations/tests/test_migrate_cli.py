"""`marquee migrate` repairs a dirty database, both documented ways (P-3).

The commands call asyncio.run, so they run on a worker thread, off the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
from typer.testing import CliRunner, Result

from marquee_cli.main import app

runner = CliRunner()

ITEMS = "CREATE TABLE items (id int PRIMARY KEY, sku text);"
# Statement 2 fails: `orders` does not exist yet. Statement 1 has already built its index.
BROKEN_INDEXES = (
    "-- marquee: no-transaction\n"
    "CREATE INDEX CONCURRENTLY items_sku ON items (sku);\n"
    "CREATE INDEX CONCURRENTLY orders_item ON orders (item);\n"
)
UNDO_INDEXES = (
    "-- marquee: no-transaction\n"
    "-- IF EXISTS: it must also undo a half-applied up.\n"
    "DROP INDEX CONCURRENTLY IF EXISTS orders_item;\n"
    "DROP INDEX CONCURRENTLY IF EXISTS items_sku;\n"
)


async def migrate(url: str, folder: Path, *args: str) -> Result:
    argv = ["migrate", *args, "--set", "shop", "--dir", str(folder), "--database-url", url]
    return await asyncio.to_thread(runner.invoke, app, argv)


def document(result: Result) -> Any:
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("marquee: ")
    for fragment in fragments:
        assert fragment in result.stderr


async def break_at_version_2(url: str, folder: Path) -> None:
    (folder / "1_items.up.sql").write_text(ITEMS)
    (folder / "2_indexes.up.sql").write_text(BROKEN_INDEXES)
    (folder / "2_indexes.down.sql").write_text(UNDO_INDEXES)
    result = await migrate(url, folder, "up")
    assert_one_line_error(result, "2_indexes up failed", "DIRTY at version 2")


async def test_status_reports_the_dirty_version_and_up_refuses_it(
    scratch_database_url: str, tmp_path: Path
) -> None:
    await break_at_version_2(scratch_database_url, tmp_path)
    status = await migrate(scratch_database_url, tmp_path, "status", "--json")
    assert status.exit_code == 1
    (shop,) = document(status)["sets"]
    assert (shop["version"], shop["dirty"], shop["pending"]) == (2, True, [])
    assert "statement 2 of 2" in shop["error"]
    assert "marquee migrate down --set NAME" in status.stderr
    assert_one_line_error(
        await migrate(scratch_database_url, tmp_path, "up"), "dirty at version 2", "force 2"
    )


async def test_down_runs_the_dirty_migrations_down_script_then_a_fixed_up_applies(
    scratch_database_url: str, tmp_path: Path
) -> None:
    await break_at_version_2(scratch_database_url, tmp_path)
    down = await migrate(scratch_database_url, tmp_path, "down", "--json")
    assert down.exit_code == 0, down.output
    assert document(down) == {"set": "shop", "reverted": [2]}
    # The author fixes the migration; up applies it on a clean version 1.
    (tmp_path / "2_indexes.up.sql").write_text(
        "-- marquee: no-transaction\nCREATE INDEX CONCURRENTLY items_sku ON items (sku);\n"
    )
    up = await migrate(scratch_database_url, tmp_path, "up", "--json")
    assert up.exit_code == 0, up.output
    assert document(up) == {"applied": {"shop": [2]}}
    status = await migrate(scratch_database_url, tmp_path, "status", "--json")
    assert status.exit_code == 0
    assert document(status)["sets"][0] | {"error": None} == {
        "set": "shop", "version": 2, "dirty": False, "error": None, "latest": 2, "pending": []
    }  # fmt: skip


async def test_force_after_a_manual_fix_marks_it_clean_and_later_migrations_run(
    scratch_database_url: str, tmp_path: Path
) -> None:
    await break_at_version_2(scratch_database_url, tmp_path)
    # The operator finishes the migration's work by hand.
    conn = await asyncpg.connect(scratch_database_url)
    try:
        await conn.execute("CREATE TABLE orders (id int, item int)")
        await conn.execute("CREATE INDEX CONCURRENTLY orders_item ON orders (item)")
    finally:
        await conn.close()
    forced = await migrate(scratch_database_url, tmp_path, "force", "2")
    assert forced.exit_code == 0, forced.output
    assert "recorded version 2 as clean" in forced.stdout
    (tmp_path / "3_note.up.sql").write_text("ALTER TABLE orders ADD COLUMN note text;")
    up = await migrate(scratch_database_url, tmp_path, "up")
    assert up.exit_code == 0, up.output
    assert up.stdout.strip() == "shop: 3"


async def test_force_refuses_an_unknown_version_and_a_bad_url_is_one_line(
    scratch_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "1_items.up.sql").write_text(ITEMS)
    assert_one_line_error(
        await migrate(scratch_database_url, tmp_path, "force", "7"), "no migration with version 7"
    )
    bad = await migrate("postgresql://marquee@127.0.0.1:1/nowhere", tmp_path, "status")
    assert_one_line_error(bad)
