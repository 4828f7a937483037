"""`marquee migrate status|up|down|force`: schema migrations of every installed service.

Sets come from the `marquee.migrations` entry points (or `--dir` for a loose
folder of files). A dirty database — a no-transaction migration that stopped
part-way — is shown by `status` with its version and error, and left alone by
`up` until an operator runs `down` (its down script) or fixes the schema by hand
and runs `force`. Nothing here forces anything on its own.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from marquee_cli import output
from marquee_cli.endpoints import EndpointsFileError, endpoints_path, read_endpoints
from marquee_cli.output import CommandError, fail

if TYPE_CHECKING:  # marquee_migrations loads asyncpg: only the commands that migrate pay for it
    from marquee_migrations import MigrationSet, Migrator, Status

app = output.command_group("Apply, revert and repair database schema migrations.")

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="MARQUEE_DATABASE_URL",
        help="postgresql:// URL (default: the PostgreSQL of the suite running under --data-dir).",
    ),
]
DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="MARQUEE_DATA_DIR", help="Where the local suite runs."),
]
SetName = Annotated[
    str | None, typer.Option("--set", help="Migration set (a service's name); default: all.")
]
RequiredSet = Annotated[str, typer.Option("--set", help="Migration set (a service's name).")]
Directory = Annotated[
    Path | None,
    typer.Option("--dir", help="Use the migration files in this folder (with --set as its name)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DEFAULT_DATA_DIR = Path(".data")
HEADERS = ("SET", "VERSION", "LATEST", "DIRTY", "PENDING", "ERROR")


def _database_url(url: str | None, data_dir: Path) -> str:
    if url:
        return url
    path = endpoints_path(data_dir.absolute())
    try:
        suite = read_endpoints(path)
    except FileNotFoundError:
        raise fail(f"no suite running ({path} does not exist); pass --database-url") from None
    except EndpointsFileError as exc:
        raise fail(f"cannot read endpoints file: {exc}") from None
    for process in suite.processes:
        if process.url and process.url.startswith("postgresql://"):
            return process.url
    raise fail(f"the suite in {path} runs no PostgreSQL; pass --database-url")


def _sets(name: str | None, directory: Path | None) -> list[MigrationSet]:
    from marquee_migrations import MigrationSet, installed_sets

    if directory is not None:
        if name is None:
            raise fail("--dir needs --set to name the migration set")
        if not directory.is_dir():
            raise fail(f"{directory} is not a directory")
        return [MigrationSet.from_directory(name, directory)]
    found = installed_sets()
    if name is None:
        return [found[key] for key in sorted(found)]
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise fail(f"no migration set {name!r} is installed (known: {known}); or pass --dir")
    return [found[name]]


def _run(step: Coroutine[Any, Any, T]) -> T:
    """Run one step; a migration or connection error becomes a CommandError (exit code 1)."""
    import asyncio

    from marquee_migrations import MigrationError

    try:
        return asyncio.run(step)
    except MigrationError as exc:
        raise fail(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise fail(f"cannot reach the database: {exc}") from None
    except Exception as exc:  # asyncpg's errors (bad URL, auth, missing database)
        raise fail(f"{type(exc).__name__}: {exc}") from None


def _migrator(url: str, migrations: MigrationSet) -> Migrator:
    from marquee_migrations import Migrator

    return Migrator(url, migrations)


def _row(status: Status) -> tuple[object, ...]:
    pending = ",".join(str(v) for v in status.pending) or None
    return (
        status.name,
        status.version,
        status.latest,
        "YES" if status.dirty else "no",
        pending,
        status.error,
    )


@app.command()
def status(
    set_name: SetName = None,
    directory: Directory = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: Json = False,
) -> None:
    """Show each set's version, pending migrations and dirty state. Exits 1 if any is dirty."""
    url = _database_url(database_url, data_dir)
    statuses = [_run(_migrator(url, s).status()) for s in _sets(set_name, directory)]
    if json_output:
        typer.echo(output.render_json({"sets": [s.to_json() for s in statuses]}))
    else:
        typer.echo(output.render_table(HEADERS, [_row(s) for s in statuses]))
    dirty = [s for s in statuses if s.dirty]
    if dirty:
        names = ", ".join(f"{s.name} at {s.version}" for s in dirty)
        raise output.negative(
            f"dirty: {names}; run `marquee migrate down --set NAME`, or fix the schema by hand "
            "and `marquee migrate force VERSION --set NAME` (see docs/jobs.md)"
        )


@app.command()
def up(
    set_name: SetName = None,
    to: Annotated[int | None, typer.Option("--to", help="Stop at this version.")] = None,
    directory: Directory = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: Json = False,
) -> None:
    """Apply pending migrations, each in its own transaction (refuses a dirty database)."""
    url = _database_url(database_url, data_dir)
    report: dict[str, list[int]] = {}
    for migrations in _sets(set_name, directory):
        try:
            applied = _run(_migrator(url, migrations).up(to))
        except CommandError as error:
            error.details["applied"] = report  # what the sets before this one did
            raise
        report[migrations.name] = applied
        if not json_output:
            done = ", ".join(str(v) for v in applied) if applied else "nothing to apply"
            typer.echo(f"{migrations.name}: {done}")
    if json_output:
        typer.echo(output.render_json({"applied": report}))


@app.command()
def down(
    set_name: RequiredSet,
    steps: Annotated[int, typer.Option("--steps", min=1, help="How many to revert.")] = 1,
    directory: Directory = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: Json = False,
) -> None:
    """Revert the last STEPS migrations of one set; on a dirty set, revert the dirty one."""
    url = _database_url(database_url, data_dir)
    (migrations,) = _sets(set_name, directory)
    reverted = _run(_migrator(url, migrations).down(steps))
    if json_output:
        typer.echo(output.render_json({"set": migrations.name, "reverted": reverted}))
    else:
        done = ", ".join(str(v) for v in reverted) if reverted else "nothing to revert"
        typer.echo(f"{migrations.name}: reverted {done}")


@app.command()
def force(
    version: Annotated[
        int, typer.Argument(metavar="VERSION", help="The version the schema really is at now.")
    ],
    set_name: RequiredSet,
    directory: Directory = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: Json = False,
) -> None:
    """Record VERSION as applied and clean, running nothing: only after a fix by hand."""
    url = _database_url(database_url, data_dir)
    (migrations,) = _sets(set_name, directory)
    after = _run(_migrator(url, migrations).force(version))
    if json_output:
        typer.echo(output.render_json(after.to_json()))
    else:
        typer.echo(f"{migrations.name}: recorded version {version} as clean")
