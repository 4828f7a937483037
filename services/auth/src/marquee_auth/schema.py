"""The auth service's tables, as a migration set (`marquee migrate ... --set auth`)."""

from __future__ import annotations

from marquee_migrations import MigrationSet

MIGRATIONS = MigrationSet.from_package("auth", "marquee_auth", "sql")
