"""The `marquee` command line.

Top-level commands run the local suite (up, status, down). Admin command
groups (cluster, lease, cache, migrate) each get their own module with a
typer sub-app, registered here with `app.add_typer(<module>.app, name=...)`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from marquee_cli import cache_commands, cluster_commands, lease_commands, migrate_commands, output
from marquee_cli.control import StopTimeout, launcher_process, stop_suite, suite_status
from marquee_cli.datadir_lock import DataDirBusy
from marquee_cli.endpoints import EndpointsFileError, endpoints_path, read_endpoints
from marquee_cli.launcher import LaunchOptions, launch
from marquee_cli.ports import check_base_port

app = typer.Typer(
    name="marquee",
    help="Run and administer the Marquee services.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(cluster_commands.app, name="cluster")
app.add_typer(lease_commands.app, name="lease")
app.add_typer(migrate_commands.app, name="migrate")
app.add_typer(cache_commands.app, name="cache")

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


def _fail(message: str) -> typer.Exit:
    typer.echo(f"marquee: {message}", err=True)
    return typer.Exit(1)


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Interface every process listens on.")] = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option(
            help="gRPC on B+0.., metrics on B+100.., raft on B+200.., "
            "Redis B+300, PostgreSQL B+301; 0 picks free ports for everything."
        ),
    ] = 50050,
    coordinators: Annotated[
        int, typer.Option(min=1, max=9, help="Coordinator (Raft) nodes to run.")
    ] = 3,
    startup_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds each stage may take to become ready.")
    ] = 60.0,
    json_output: Json = False,
) -> None:
    """Start Redis, PostgreSQL and every service locally; Ctrl-C stops them all."""
    try:
        check_base_port(base_port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--base-port") from None
    options = LaunchOptions(
        data_dir=data_dir.absolute(),
        host=host,
        base_port=base_port,
        coordinators=coordinators,
        startup_timeout=startup_timeout,
        json_output=json_output,
    )
    try:
        code = launch(options)
    except DataDirBusy as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def status(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: Json = False) -> None:
    """Show every process of the running suite: alive, and answering health checks.

    Exits 1 when the suite is not running or any process is unhealthy.
    """
    path = endpoints_path(data_dir.absolute())
    try:
        endpoints = read_endpoints(path)
    except FileNotFoundError:
        if json_output:
            typer.echo(output.render_json({"running": False, "processes": []}))
        raise _fail(f"no suite running ({path} does not exist)") from None
    except EndpointsFileError as exc:
        raise _fail(f"cannot read endpoints file: {exc}") from None
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
        rows = [
            (
                s.endpoint.name,
                s.endpoint.role,
                s.endpoint.pid,
                "yes" if s.alive else "NO",
                s.health,
                s.endpoint.grpc or s.endpoint.url,
            )
            for s in statuses
        ]
        typer.echo(output.render_table(("NAME", "ROLE", "PID", "ALIVE", "HEALTH", "ADDRESS"), rows))
    raise typer.Exit(0 if healthy else 1)


@app.command()
def down(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the launcher.")] = 30.0,
    json_output: Json = False,
) -> None:
    """Stop the suite started by `marquee up` (SIGTERM to its launcher) and wait for it."""
    try:
        outcome, pid = stop_suite(data_dir.absolute(), timeout)
    except StopTimeout as exc:
        raise _fail(str(exc)) from None
    except EndpointsFileError as exc:
        raise _fail(f"cannot read endpoints file: {exc}") from None
    messages = {
        "stopped": f"stopped the suite (launcher pid {pid})",
        "not-running": "no suite running",
        "stale": f"launcher pid {pid} was already gone; removed its stale endpoints file",
    }
    if json_output:
        typer.echo(output.render_json({"outcome": outcome, "launcher_pid": pid}))
    else:
        typer.echo(messages[outcome])
