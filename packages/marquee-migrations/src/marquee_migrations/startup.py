"""What a service's registrar calls before it serves: migrate, or check it need not."""

from __future__ import annotations

from marquee_migrations.errors import DirtyDatabase, SchemaNotReady
from marquee_migrations.files import MigrationSet
from marquee_migrations.migrator import Migrator, Status


async def migrate_on_start(dsn: str, migrations: MigrationSet, *, apply: bool) -> Status:
    """Apply pending migrations when `apply`, then insist the schema is current and clean.

    Raises DirtyDatabase or SchemaNotReady (their messages name the CLI way out)
    instead of serving against a schema the code does not expect. Replicas that
    start together are serialized by the migrator's advisory lock.
    """
    migrator = Migrator(dsn, migrations)
    if apply:
        await migrator.up()
    status = await migrator.status()
    if status.dirty:
        raise DirtyDatabase(
            status.name, status.version, migrations.previous(status.version), status.error
        )
    if status.version != status.latest:
        raise SchemaNotReady(status.name, status.version, status.latest)
    return status
