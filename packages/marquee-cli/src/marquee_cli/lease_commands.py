"""`marquee lease acquire|get|list|release`: leases by hand, for operators and scripts."""

from __future__ import annotations

import getpass
import socket
from typing import Annotated

import typer

from marquee_cli import output
from marquee_cli.coordinator_target import (
    DEFAULT_DATA_DIR,
    DEFAULT_TIMEOUT,
    DataDir,
    Endpoints,
    Json,
    Timeout,
    fail,
    lease_json,
    run,
)
from marquee_lease import LeaseInfo

app = typer.Typer(help="Acquire, inspect and release coordinator leases.", no_args_is_help=True)


def default_holder() -> str:
    # Stable across invocations from one shell, so `release` matches `acquire`.
    return f"{getpass.getuser()}@{socket.gethostname()}"


Holder = Annotated[
    str,
    typer.Option("--holder", envvar="MARQUEE_LEASE_HOLDER", help="Holder id (default: user@host)."),
]
HEADERS = ("NAME", "HOLDER", "TOKEN", "TTL", "REMAINING")


def _row(lease: LeaseInfo) -> tuple[object, ...]:
    return (lease.name, lease.holder_id, lease.token, f"{lease.ttl:g}s", f"{lease.remaining:.1f}s")


@app.command()
def acquire(
    name: str,
    ttl: Annotated[float, typer.Option(min=0.001, help="Seconds it lives without renewal.")],
    wait: Annotated[float, typer.Option(min=0.0, help="Seconds to wait for it to be free.")] = 0.0,
    holder: Holder = "",
    endpoints: Endpoints = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Acquire NAME for one TTL (nothing renews it). Exits 1 if someone else holds it."""
    holder = holder or default_holder()
    result = run(
        endpoints,
        data_dir,
        timeout + wait,
        lambda client: client.acquire(name, holder, ttl, wait=wait),
    )
    if json_output:
        typer.echo(
            output.render_json(
                {
                    "acquired": result.acquired,
                    "lease": lease_json(result.lease) if result.lease else None,
                }
            )
        )
    elif result.acquired and result.lease:
        typer.echo(f"acquired {name!r} with token {result.lease.token} for {ttl:g}s")
    if not result.acquired:
        holder_text = f"held by {result.lease.holder_id}" if result.lease else "not free"
        raise fail(f"lease {name!r} is {holder_text}")


@app.command()
def get(
    name: str,
    endpoints: Endpoints = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Show who holds NAME. Exits 1 if nobody does."""
    lease = run(endpoints, data_dir, timeout, lambda client: client.get(name))
    if json_output:
        typer.echo(
            output.render_json({"found": lease is not None, "lease": lease and lease_json(lease)})
        )
    elif lease:
        typer.echo(output.render_table(HEADERS, [_row(lease)]))
    if lease is None:
        raise fail(f"nobody holds lease {name!r}")


@app.command("list")
def list_leases(
    prefix: Annotated[str, typer.Option(help="Only names starting with this.")] = "",
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0: server default).")] = 0,
    endpoints: Endpoints = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """List the held leases, sorted by name."""
    found = run(
        endpoints, data_dir, timeout, lambda client: client.list_leases(prefix, limit=limit)
    )
    if json_output:
        document = {"leases": [lease_json(lease) for lease in found.leases], "more": found.more}
        typer.echo(output.render_json(document))
        return
    typer.echo(output.render_table(HEADERS, [_row(lease) for lease in found.leases]))
    if found.more:
        typer.echo("(more leases match; raise --limit)")


@app.command()
def release(
    name: str,
    token: Annotated[int, typer.Option(help="The fencing token it was acquired with.")],
    holder: Holder = "",
    endpoints: Endpoints = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Release NAME. Exits 1 if it was not held by the holder with TOKEN."""
    holder = holder or default_holder()
    released = run(endpoints, data_dir, timeout, lambda client: client.release(name, holder, token))
    if json_output:
        typer.echo(output.render_json({"released": released}))
    elif released:
        typer.echo(f"released {name!r} (token {token})")
    if not released:
        raise fail(f"lease {name!r} is not held by {holder} with token {token}")
