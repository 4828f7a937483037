"""The `marquee` command line.

Top-level commands run the local suite (up, status, down). Admin command
groups (cluster, lease, cache, migrate, search) each get their own module with a
typer sub-app, registered here with `app.add_typer(<module>.app, name=...)`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

# Only light modules here: every command pays for these imports at start-up, so
# anything heavy (grpc, psutil, redis, the launcher) is imported by the command
# that needs it. bench/cli measures it.
from marquee_cli import (
    auth_commands,
    cache_commands,
    cluster_commands,
    lease_commands,
    media_commands,
    migrate_commands,
    output,
    search_commands,
)
from marquee_cli.endpoints import EndpointsFileError, endpoints_path, read_endpoints
from marquee_cli.output import CommandError, fail


def wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for JSON (an option before any `--`)."""
    options = list(args)
    if "--" in options:
        options = options[: options.index("--")]
    return "--json" in options


class MarqueeGroup(TyperGroup):
    """Reports every failure in one place: `marquee: ...` on stderr, or with --json
    a JSON document on stdout, usage errors included; a non-zero exit either way."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        json_mode = wants_json(argv)
        try:
            # With --json, usage errors come back here instead of being printed.
            result = super().main(
                argv,
                prog_name,
                complete_var,
                standalone_mode=standalone_mode and not json_mode,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = result if isinstance(result, int) else 0
        except CommandError as error:
            output.report(error, json_mode)
            code = error.exit_code
        except typer.TyperException as error:  # click's usage errors, in JSON mode only
            kind = "usage" if error.exit_code == 2 else "error"
            message = error.format_message()
            output.report(CommandError(message, exit_code=error.exit_code, kind=kind), True)
            code = error.exit_code
        except typer.Abort:
            output.report(CommandError("aborted"), json_mode)
            code = 1
        except Exception as error:
            if not json_mode:
                raise
            import traceback

            traceback.print_exc()  # a bug: people need the traceback, scripts the JSON
            output.report(CommandError(f"{type(error).__name__}: {error}", kind="internal"), True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="marquee",
    help="Run and administer the Marquee services.",
    no_args_is_help=True,
    add_completion=False,
    cls=MarqueeGroup,
    rich_markup_mode=None,  # see output.command_group
)

app.add_typer(cluster_commands.app, name="cluster")
app.add_typer(lease_commands.app, name="lease")
app.add_typer(migrate_commands.app, name="migrate")
app.add_typer(cache_commands.app, name="cache")
app.add_typer(search_commands.app, name="search")
app.add_typer(media_commands.app, name="media")
app.add_typer(auth_commands.app, name="auth")

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="MARQUEE_DATA_DIR",
        help="Where the local suite keeps its data, logs and endpoints.json.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_DATA_DIR = Path(".data")
# A day: past any real wait, and inside what a timer can hold (1e300 would overflow).
MAX_WAIT_SECONDS = 86_400.0


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Interface every process listens on.")] = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option(
            help="gRPC on B+0.., metrics on B+100.., raft on B+200.., "
            "Redis B+300, PostgreSQL B+301, auth's dev console B+302, SeaweedFS's S3 B+303, "
            "the OIDC provider B+304; 0 picks free ports "
            "on a new data dir and reuses <data>/ports.json on one that has run."
        ),
    ] = 50050,
    coordinators: Annotated[
        int, typer.Option(min=1, max=9, help="Coordinator (Raft) nodes to run.")
    ] = 3,
    startup_timeout: Annotated[
        float,
        typer.Option(
            min=1.0, max=MAX_WAIT_SECONDS, help="Seconds each stage may take to become ready."
        ),
    ] = 60.0,
    json_output: Json = False,
    storage: Annotated[
        str,
        typer.Option(
            envvar="MARQUEE_UP_STORAGE",
            help="Where media keeps objects: 'local' disk under the data dir, or 's3' "
            "on a SeaweedFS S3 server the launcher runs (data under <data>/seaweedfs).",
        ),
    ] = "local",
) -> None:
    """Start Redis, PostgreSQL and every service locally; Ctrl-C stops them all.

    In the dev profile the local OIDC provider starts too (MARQUEE_UP_OIDC=0: not).
    """
    from marquee_cli.datadir_lock import DataDirBusy
    from marquee_cli.launcher import LaunchOptions, launch
    from marquee_cli.ports import check_base_port
    from marquee_cli.suite import STORAGES

    try:
        check_base_port(base_port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--base-port") from None
    if storage not in STORAGES:
        raise typer.BadParameter(
            f"{storage!r} is not one of {', '.join(STORAGES)}", param_hint="--storage"
        )
    options = LaunchOptions(
        data_dir=data_dir.absolute(),
        host=host,
        base_port=base_port,
        coordinators=coordinators,
        startup_timeout=startup_timeout,
        json_output=json_output,
        storage=storage,
    )
    try:
        code = launch(options)
    except DataDirBusy as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: Json = False) -> None:
    """Show every process of the running suite: alive, and each of its services healthy.

    Exits 1 when the suite is not running or any process or service is unhealthy.
    """
    path = endpoints_path(data_dir.absolute())
    try:
        endpoints = read_endpoints(path)
    except FileNotFoundError:
        if json_output:
            typer.echo(output.render_json({"running": False, "healthy": False, "processes": []}))
        raise output.negative(f"no suite running ({path} does not exist)") from None
    except EndpointsFileError as exc:
        raise fail(f"cannot read endpoints file: {exc}") from None
    import asyncio

    from marquee_cli.control import launcher_process, suite_status

    launcher_alive = launcher_process(endpoints) is not None
    statuses = asyncio.run(suite_status(endpoints))
    healthy = launcher_alive and all(s.ok for s in statuses)
    if json_output:
        document = endpoints.to_json() | {
            "running": launcher_alive,
            "healthy": healthy,
            "processes": [s.to_json() for s in statuses],
        }
        typer.echo(output.render_json(document))
    else:
        state = "running" if launcher_alive else "NOT RUNNING (stale endpoints file)"
        typer.echo(f"launcher pid {endpoints.launcher_pid}: {state}\n")
        typer.echo(output.status_tables(statuses))
    raise typer.Exit(0 if healthy else 1)


@app.command()
def down(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Annotated[
        float, typer.Option(min=0.0, max=MAX_WAIT_SECONDS, help="Seconds to wait for the launcher.")
    ] = 30.0,
    json_output: Json = False,
) -> None:
    """Stop the suite started by `marquee up` (SIGTERM to its launcher) and wait for it."""
    from marquee_cli.control import StopTimeout, stop_suite

    try:
        outcome, pid = stop_suite(data_dir.absolute(), timeout)
    except StopTimeout as exc:
        raise fail(str(exc)) from None
    except EndpointsFileError as exc:
        raise fail(f"cannot read endpoints file: {exc}") from None
    messages = {
        "stopped": f"stopped the suite (launcher pid {pid})",
        "not-running": "no suite running",
        "stale": f"launcher pid {pid} was already gone; removed its stale endpoints file",
    }
    if json_output:
        typer.echo(output.render_json({"outcome": outcome, "launcher_pid": pid}))
    else:
        typer.echo(messages[outcome])
