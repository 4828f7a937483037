"""What the coordinator admin commands share: where the cluster is, and how failures read.

Targets come from `--endpoints host:port,...` or else from the endpoints.json of
the suite running under `--data-dir` (its "raft node" processes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from marquee_cli.endpoints import EndpointsFileError, endpoints_path, read_endpoints
from marquee_cli.output import CommandError, fail

if TYPE_CHECKING:  # marquee_lease loads grpc and the protos: only commands that call pay for it
    from marquee_lease import CoordinatorClient, CoordinatorError, LeaseInfo, Member

COORDINATOR_ROLE = "raft node"

Endpoints = Annotated[
    str | None,
    typer.Option(
        "--endpoints",
        envvar="MARQUEE_COORDINATOR_ENDPOINTS",
        help="Coordinator gRPC addresses, host:port,... (default: from the running suite).",
    ),
]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        envvar="MARQUEE_COORDINATOR_ADMIN_TOKEN",
        show_default=False,
        help="The cluster's admin credential (its ADMIN_TOKEN, else CLUSTER_SECRET); needed by"
        " join, leave and transfer outside the dev profile.",
    ),
]
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="MARQUEE_DATA_DIR",
        help="Where the local suite keeps its endpoints.json (used without --endpoints).",
    ),
]
# A day: far beyond any call, and inside what a gRPC deadline can hold (1e300 overflows).
MAX_TIMEOUT_SECONDS = 86_400.0
# The protobuf types behind --limit (uint32) and --token (uint64).
MAX_UINT32 = 2**32 - 1
MAX_UINT64 = 2**64 - 1
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        max=MAX_TIMEOUT_SECONDS,
        help="Seconds the whole command may take.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DEFAULT_DATA_DIR = Path(".data")
DEFAULT_TIMEOUT = 5.0

T = TypeVar("T")


def coordinator_endpoints(endpoints: str | None, data_dir: Path) -> list[str]:
    if endpoints:
        addresses = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not addresses:
            raise fail("--endpoints names no address")
        return addresses
    path = endpoints_path(data_dir.absolute())
    try:
        suite = read_endpoints(path)
    except FileNotFoundError:
        raise fail(f"no suite running ({path} does not exist); pass --endpoints") from None
    except EndpointsFileError as exc:
        raise fail(f"cannot read endpoints file: {exc}") from None
    addresses = [p.grpc for p in suite.processes if p.role == COORDINATOR_ROLE and p.grpc]
    if not addresses:
        raise fail(f"the suite in {path} runs no coordinator")
    return addresses


def run(
    endpoints: str | None,
    data_dir: Path,
    timeout: float,
    action: Callable[[CoordinatorClient], Awaitable[T]],
    *,
    admin_token: str | None = None,
) -> T:
    """Run `action` with a client; a coordinator error becomes a CommandError (exit code 1)."""
    addresses = coordinator_endpoints(endpoints, data_dir)
    import asyncio

    from marquee_lease import CoordinatorClient, CoordinatorError

    async def main() -> T:
        async with CoordinatorClient(addresses, timeout=timeout, admin_token=admin_token) as client:
            return await action(client)

    try:
        return asyncio.run(main())
    except CoordinatorError as exc:
        raise coordinator_error(exc) from None


def coordinator_error(exc: CoordinatorError) -> CommandError:
    """The error as the user sees it, with the gRPC status code when there was one."""
    code = getattr(exc, "code", None)
    if code is None:
        return fail(str(exc))
    return fail(str(exc), grpc_status=code.name)


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def lease_json(lease: LeaseInfo) -> dict[str, Any]:
    return {
        "name": lease.name,
        "holder_id": lease.holder_id,
        "token": lease.token,
        "ttl_seconds": lease.ttl,
        "remaining_seconds": round(lease.remaining, 3),
        "acquired_revision": lease.acquired_revision,
        "modified_revision": lease.modified_revision,
        "acquired_at": _time(lease.acquired_at),
        "expires_at": _time(lease.expires_at),
    }


def member_json(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "address": member.grpc_address,
        "raft_address": member.raft_address,
        "role": member.role,
        "healthy": member.healthy,
        "connected": member.connected,
        "last_contact_seconds": member.last_contact,
    }
