"""The queue's own tables, as a migration set (`marquee migrate ... --set jobs`)."""

from __future__ import annotations

from marquee_migrations import MigrationSet

MIGRATIONS = MigrationSet.from_package("jobs", "marquee_jobs", "sql")
