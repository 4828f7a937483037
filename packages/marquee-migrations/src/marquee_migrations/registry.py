"""Installed migration sets, found through the `marquee.migrations` entry-point group.

A package with a schema declares, in its pyproject.toml::

    [project.entry-points."marquee.migrations"]
    jobs = "marquee_jobs.schema:MIGRATIONS"

so `marquee migrate` can reach every service's migrations without importing services.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from marquee_migrations.errors import MigrationError
from marquee_migrations.files import MigrationSet

GROUP = "marquee.migrations"


def installed_sets() -> dict[str, MigrationSet]:
    found = {}
    for entry in entry_points(group=GROUP):
        loaded = entry.load()
        if not isinstance(loaded, MigrationSet):
            raise MigrationError(f"entry point {entry.name} ({entry.value}) is not a MigrationSet")
        found[entry.name] = loaded
    return found
