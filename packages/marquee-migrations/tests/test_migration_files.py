"""Parsing migration folders: order, the no-transaction header, statement splitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee_migrations import MigrationError, MigrationSet, Script


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return folder


def test_versions_sort_numerically_and_pair_up_with_their_down_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "10_late.up.sql": "SELECT 10;",
            "2_second.up.sql": "SELECT 2;",
            "2_second.down.sql": "SELECT -2;",
            "1_first.up.sql": "SELECT 1;",
            "README.md": "ignored",
        },
    )
    migrations = MigrationSet.from_directory("t", tmp_path)
    assert [m.version for m in migrations.migrations] == [1, 2, 10]
    assert migrations.get(2).down is not None
    assert migrations.get(1).down is None
    assert migrations.previous(10) == 2
    assert migrations.previous(1) == 0
    assert migrations.latest == 10


def test_a_down_without_an_up_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"3_orphan.down.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="no up file"):
        MigrationSet.from_directory("t", tmp_path)


def test_the_header_marks_a_script_non_transactional_and_it_is_split_per_statement() -> None:
    script = Script.parse(
        "-- builds an index without blocking writes\n"
        "-- marquee: no-transaction\n"
        "CREATE INDEX CONCURRENTLY a_x ON a (x);\n"
        "-- a comment alone is not a statement;\n"
        "CREATE INDEX CONCURRENTLY a_y\n    ON a (y);\n"
    )
    assert not script.transactional
    assert script.statements() == [
        "-- builds an index without blocking writes\n"
        "-- marquee: no-transaction\n"
        "CREATE INDEX CONCURRENTLY a_x ON a (x)",
        "CREATE INDEX CONCURRENTLY a_y\n    ON a (y)",
    ]


def test_the_header_counts_only_before_the_first_statement() -> None:
    assert Script.parse("SELECT 1;\n-- marquee: no-transaction\n").transactional
