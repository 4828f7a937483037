"""`marquee lease acquire|get|list|release`: leases by hand, for operators and scripts."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from marquee_cli import output
from marquee_cli.coordinator_target import (
    DEFAULT_DATA_DIR,
    DEFAULT_TIMEOUT,
    MAX_UINT32,
    MAX_UINT64,
    DataDir,
    Endpoints,
    Json,
    Timeout,
    lease_json,
    run,
)
from marquee_cli.names import printable, within_bytes

if TYPE_CHECKING:
    from marquee_lease import CoordinatorClient, LeaseInfo

app = output.command_group("Acquire, inspect and release coordinator leases.")

# The coordinator's own bounds (marquee_coordinator.raft_node: MAX_KEY_LENGTH,
# MAX_LEASE_TTL; raft_config: min_lease_ttl, two election timeouts). The shortest
# TTL depends on the cluster's Raft timing: 1.2 s with "fast", 2 s by default; the
# option allows the lower one and a default-timing cluster answers anything shorter
# with its own INVALID_ARGUMENT. tests/test_cli_lease.py keeps these in step.
MAX_NAME_BYTES = 256
MIN_TTL_SECONDS = 1.2
MAX_TTL_SECONDS = 24 * 3600.0


def default_holder() -> str:
    """user@host:pid plus a random suffix: unique per invocation.

    Two shells (or two scripts on one host) must never both "hold" one lease, as
    they would under a shared user@host. `acquire` prints the holder it used and
    `release` can find it from the lease's token.
    """
    import getpass
    import os
    import secrets
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}-{secrets.token_hex(3)}"


def _name(value: str) -> str:
    return within_bytes(value, MAX_NAME_BYTES, "a lease name")


def _holder(value: str) -> str:
    return within_bytes(value, MAX_NAME_BYTES, "a holder id") if value else value


Name = Annotated[str, typer.Argument(callback=_name, metavar="NAME", help="The lease name.")]
Holder = Annotated[
    str,
    typer.Option(
        "--holder",
        envvar="MARQUEE_LEASE_HOLDER",
        callback=_holder,
        help="Holder id (default: user@host:pid-<random>, new for each command).",
    ),
]
HEADERS = ("NAME", "HOLDER", "TOKEN", "TTL", "REMAINING")


def _row(lease: LeaseInfo) -> tuple[object, ...]:
    return (lease.name, lease.holder_id, lease.token, f"{lease.ttl:g}s", f"{lease.remaining:.1f}s")


@app.command()
def acquire(
    name: Name,
    ttl: Annotated[
        float,
        typer.Option(
            min=MIN_TTL_SECONDS,
            max=MAX_TTL_SECONDS,
            help="Seconds it lives without renewal (the coordinator's minimum is two "
            "election timeouts: 2 s with default Raft timing).",
        ),
    ],
    wait: Annotated[
        float, typer.Option(min=0.0, max=MAX_TTL_SECONDS, help="Seconds to wait for it to be free.")
    ] = 0.0,
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
        typer.echo(
            f"acquired {name!r} as {holder} with token {result.lease.token} for {ttl:g}s; "
            f"release it with `marquee lease release {shlex.quote(name)} "
            f"--token {result.lease.token}`"
        )
    if not result.acquired:
        holder_text = f"held by {result.lease.holder_id}" if result.lease else "not free"
        raise output.negative(f"lease {name!r} is {holder_text}")


@app.command()
def get(
    name: Name,
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
        raise output.negative(f"nobody holds lease {name!r}")


@app.command("list")
def list_leases(
    prefix: Annotated[
        str, typer.Option(callback=printable, help="Only names starting with this.")
    ] = "",
    limit: Annotated[
        int, typer.Option(min=0, max=MAX_UINT32, help="At most this many (0: server default).")
    ] = 0,
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
    name: Name,
    token: Annotated[
        int, typer.Option(min=1, max=MAX_UINT64, help="The fencing token it was acquired with.")
    ],
    holder: Holder = "",
    endpoints: Endpoints = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Release NAME. Exits 1 if it was not held with TOKEN (and by --holder, if given).

    Without --holder, the holder is whoever holds NAME with TOKEN now: a token names
    one grant of one lease, so this releases that grant and no other.
    """

    async def release_grant(client: CoordinatorClient) -> tuple[bool, str | None]:
        owner = holder
        if not owner:
            current = await client.get(name)
            if current is None or current.token != token:
                return False, None
            owner = current.holder_id
        return await client.release(name, owner, token), owner

    released, owner = run(endpoints, data_dir, timeout, release_grant)
    if json_output:
        typer.echo(output.render_json({"released": released}))
    elif released:
        typer.echo(f"released {name!r} (token {token}, holder {owner})")
    if not released:
        by = f" by {holder}" if holder else ""
        raise output.negative(f"lease {name!r} is not held{by} with token {token}")
