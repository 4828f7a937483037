"""Ordered SQL migrations per service, applied under an advisory lock.

    MIGRATIONS = MigrationSet.from_package("auth", "marquee_auth", "sql")
    await migrate_on_start(settings.database_url, MIGRATIONS, apply=settings.migrate_on_start)

Operators use `marquee migrate status|up|down|force`; docs/jobs.md explains a dirty database.
"""

from marquee_migrations.errors import (
    DirtyDatabase,
    LockTimeout,
    MigrationError,
    MigrationFailed,
    SchemaNotReady,
    UnknownVersion,
)
from marquee_migrations.files import NO_TRANSACTION, Migration, MigrationSet, Script
from marquee_migrations.migrator import Migrator, Status
from marquee_migrations.registry import installed_sets
from marquee_migrations.startup import migrate_on_start

__all__ = [
    "NO_TRANSACTION",
    "DirtyDatabase",
    "LockTimeout",
    "Migration",
    "MigrationError",
    "MigrationFailed",
    "MigrationSet",
    "Migrator",
    "SchemaNotReady",
    "Script",
    "Status",
    "UnknownVersion",
    "installed_sets",
    "migrate_on_start",
]
