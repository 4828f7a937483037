"""Search's own tables, as a migration set (`marquee migrate ... --set search`)."""

from __future__ import annotations

from marquee_migrations import MigrationSet

MIGRATIONS = MigrationSet.from_package("search", "marquee_search", "sql")
