"""`marquee cluster status|join|leave|transfer`: the coordinator's Raft membership."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from marquee_cli import output
from marquee_cli.coordinator_target import (
    DEFAULT_DATA_DIR,
    DEFAULT_TIMEOUT,
    AdminToken,
    DataDir,
    Endpoints,
    Json,
    Timeout,
    member_json,
    run,
)
from marquee_cli.names import printable

if TYPE_CHECKING:  # marquee_lease loads grpc and the protos: only commands that call pay for it
    from marquee_lease import ClusterStatus, Member, Membership

app = output.command_group("Inspect and change the coordinator cluster.")


def _members_table(members: list[Member]) -> str:
    rows = [
        (
            m.id,
            m.grpc_address,
            m.raft_address,
            m.role,
            "yes" if m.healthy else "NO",
            f"{m.last_contact:.2f}s" if m.last_contact is not None else None,
        )
        for m in members
    ]
    return output.render_table(("ID", "ADDRESS", "RAFT", "ROLE", "HEALTHY", "LAST CONTACT"), rows)


def _status_json(status: ClusterStatus) -> dict[str, Any]:
    return {
        "cluster_id": status.header.cluster_id,
        "leader": {"id": status.header.leader_id, "address": status.header.leader_address}
        if status.header.leader_id
        else None,
        "answered_by": status.member.id,
        "raft_term": status.header.raft_term,
        "revision": status.header.revision,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "has_quorum": status.has_quorum,
        "lease_count": status.lease_count,
        "storage_size_bytes": status.storage_size_bytes,
        "version": status.version,
        "errors": status.errors,
        "members": [member_json(m) for m in status.members],
    }


def _membership_json(change: Membership) -> dict[str, Any]:
    document: dict[str, Any] = {"members": [member_json(m) for m in change.members]}
    if change.added is not None:
        document["added"] = member_json(change.added)
    return document


@app.command()
def status(
    endpoints: Endpoints = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Show every member (id, address, role) and the leader. Exits 1 without a quorum."""
    report = run(endpoints, data_dir, timeout, lambda client: client.cluster_status())
    if json_output:
        typer.echo(output.render_json(_status_json(report)))
    else:
        header = report.header
        leader = f"{header.leader_id} at {header.leader_address}" if header.leader_id else "none"
        typer.echo(
            f"cluster {header.cluster_id or '-'}: leader {leader}, term {header.raft_term}, "
            f"revision {header.revision}, {report.lease_count} leases "
            f"(as seen by {report.member.id})\n"
        )
        typer.echo(_members_table(report.members))
        for error in report.errors:
            typer.echo(f"problem: {error}")
    if not report.has_quorum:
        raise typer.Exit(1)


@app.command()
def join(
    member_id: Annotated[
        str, typer.Argument(callback=printable, metavar="MEMBER_ID", help="Id of the new member.")
    ],
    raft_address: Annotated[str, typer.Option(help="host:port of its Raft transport.")],
    grpc_address: Annotated[str, typer.Option(help="host:port of its gRPC API.")],
    learner: Annotated[bool, typer.Option(help="Join as a non-voting learner.")] = False,
    endpoints: Endpoints = None,
    admin_token: AdminToken = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Add a member; then start the new node with the listed members as its peers."""
    change = run(
        endpoints,
        data_dir,
        timeout,
        lambda client: client.add_member(member_id, raft_address, grpc_address, learner=learner),
        admin_token=admin_token,
    )
    if json_output:
        typer.echo(output.render_json(_membership_json(change)))
        return
    typer.echo(f"added {member_id}; start it with these peers:\n")
    typer.echo(_members_table(change.members))


@app.command()
def leave(
    member_id: Annotated[
        str,
        typer.Argument(callback=printable, metavar="MEMBER_ID", help="Id of the member to remove."),
    ],
    endpoints: Endpoints = None,
    admin_token: AdminToken = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Remove a member (then stop its node). Refused if it would cost the quorum."""
    change = run(
        endpoints,
        data_dir,
        timeout,
        lambda client: client.remove_member(member_id),
        admin_token=admin_token,
    )
    if json_output:
        typer.echo(output.render_json(_membership_json(change)))
        return
    typer.echo(f"removed {member_id}; members now:\n")
    typer.echo(_members_table(change.members))


@app.command()
def transfer(
    target_id: Annotated[
        str,
        typer.Argument(
            metavar="TARGET_ID", help="Member to hand leadership to (default: the leader picks)."
        ),
    ] = "",
    endpoints: Endpoints = None,
    admin_token: AdminToken = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: Timeout = DEFAULT_TIMEOUT,
    json_output: Json = False,
) -> None:
    """Hand Raft leadership to another member and wait until it leads."""
    moved = run(
        endpoints,
        data_dir,
        timeout,
        lambda client: client.transfer_leadership(target_id),
        admin_token=admin_token,
    )
    if json_output:
        typer.echo(
            output.render_json(
                {
                    "previous_leader_id": moved.previous_leader_id,
                    "leader": {"id": moved.leader_id, "address": moved.leader_address},
                }
            )
        )
    else:
        typer.echo(
            f"leadership moved from {moved.previous_leader_id} to {moved.leader_id} "
            f"({moved.leader_address})"
        )
