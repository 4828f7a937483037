"""Migration files: `<version>_<name>.up.sql` and `.down.sql`, ordered by version.

A file whose leading comments contain `-- marquee: no-transaction` runs outside a
transaction (CREATE INDEX CONCURRENTLY refuses to run inside one). PostgreSQL also
runs a multi-statement string as one implicit transaction, so such a file is sent
one statement at a time: statements are split at each `;` that ends a line.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path

from marquee_migrations.errors import MigrationError

FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>\w+)\.(?P<direction>up|down)\.sql$")
NO_TRANSACTION = "-- marquee: no-transaction"
STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Script:
    sql: str = field(repr=False)
    transactional: bool

    @classmethod
    def parse(cls, sql: str) -> Script:
        return cls(sql=sql, transactional=NO_TRANSACTION not in _leading_comments(sql))

    def statements(self) -> list[str]:
        """The statements of a no-transaction script, in order, each sent on its own."""
        chunks = (chunk.strip() for chunk in STATEMENT_END.split(self.sql))
        return [chunk for chunk in chunks if chunk and _has_code(chunk)]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Script
    down: Script | None

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class MigrationSet:
    """The migrations of one service; `name` keys its row in the version table."""

    name: str
    migrations: tuple[Migration, ...]

    @classmethod
    def from_directory(cls, name: str, directory: Traversable | Path) -> MigrationSet:
        found: dict[int, dict[str, tuple[str, Script]]] = {}
        for entry in directory.iterdir():
            match = FILE_NAME.match(entry.name)
            if not match:
                continue
            version = int(match["version"])
            if version <= 0:
                raise MigrationError(f"{entry.name}: versions start at 1 (0 means 'nothing')")
            by_direction = found.setdefault(version, {})
            if match["direction"] in by_direction:
                raise MigrationError(
                    f"{name}: two {match['direction']} files for version {version}"
                )
            by_direction[match["direction"]] = (match["name"], Script.parse(entry.read_text()))
        migrations = []
        for version in sorted(found):
            files = found[version]
            if "up" not in files:
                raise MigrationError(f"{name}: version {version} has a down file but no up file")
            label, up = files["up"]
            down = files["down"][1] if "down" in files else None
            migrations.append(Migration(version=version, name=label, up=up, down=down))
        return cls(name=name, migrations=tuple(migrations))

    @classmethod
    def from_package(cls, name: str, package: str, folder: str = "sql") -> MigrationSet:
        """The files shipped inside a Python package (works for wheels and editable installs)."""
        return cls.from_directory(name, importlib.resources.files(package) / folder)

    @property
    def latest(self) -> int:
        return self.migrations[-1].version if self.migrations else 0

    def knows(self, version: int) -> bool:
        return version == 0 or any(m.version == version for m in self.migrations)

    def get(self, version: int) -> Migration:
        for migration in self.migrations:
            if migration.version == version:
                return migration
        raise MigrationError(f"{self.name}: no migration with version {version}")

    def previous(self, version: int) -> int:
        """The version just below `version` (0 when it is the first)."""
        below = [m.version for m in self.migrations if m.version < version]
        return below[-1] if below else 0

    def after(self, version: int) -> list[Migration]:
        return [m for m in self.migrations if m.version > version]


def _leading_comments(sql: str) -> list[str]:
    lines = []
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            break
        lines.append(stripped.lower())
    return lines


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())
