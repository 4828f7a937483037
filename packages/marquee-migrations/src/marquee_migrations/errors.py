"""What can go wrong while migrating; every message names the way out."""

from __future__ import annotations


class MigrationError(Exception):
    """Base class: bad migration files, or a database the migrator refuses to touch."""


class DirtyDatabase(MigrationError):
    """A no-transaction migration stopped part-way; nothing more runs until an operator decides."""

    def __init__(self, set_name: str, version: int, previous: int, error: str | None) -> None:
        self.set_name = set_name
        self.version = version
        self.previous = previous
        self.error = error
        super().__init__(
            f"{set_name}: database is dirty at version {version} "
            f"(a no-transaction migration stopped part-way: {error or 'no error recorded'}). "
            f"Way out: `marquee migrate down --set {set_name}` runs its down script, or fix "
            f"the schema by hand, then `marquee migrate force {version} --set {set_name}` "
            f"if its changes are complete or `force {previous}` if they are undone"
        )


class MigrationFailed(MigrationError):
    """One migration failed; `dirty` says whether it left the database half-changed."""

    def __init__(
        self, set_name: str, label: str, direction: str, cause: str, *, at: int, dirty: bool
    ) -> None:
        self.set_name = set_name
        self.label = label
        self.direction = direction
        self.cause = cause
        self.at = at
        self.dirty = dirty
        where = (
            f"database is now DIRTY at version {at}; run `marquee migrate status --set {set_name}`"
            if dirty
            else f"rolled back; database stays at version {at}"
        )
        super().__init__(f"{set_name}: migration {label} {direction} failed: {cause} ({where})")


class UnknownVersion(MigrationError):
    """The database records a version these files do not have (newer code ran, or files lost)."""

    def __init__(self, set_name: str, version: int, latest: int) -> None:
        self.set_name = set_name
        self.version = version
        super().__init__(
            f"{set_name}: database is at version {version}, which these migrations do not "
            f"have (latest {latest}); run the code that wrote it, or `force` a known version"
        )


class SchemaNotReady(MigrationError):
    """A service started without migrating and its schema is behind."""

    def __init__(self, set_name: str, version: int, latest: int) -> None:
        super().__init__(
            f"{set_name}: database is at version {version}, this code needs {latest}; "
            f"run `marquee migrate up --set {set_name}` or enable migrate-on-start"
        )


class LockTimeout(MigrationError):
    def __init__(self, set_name: str, seconds: float) -> None:
        super().__init__(
            f"{set_name}: another migrator held the migration lock for more than {seconds:g}s"
        )
