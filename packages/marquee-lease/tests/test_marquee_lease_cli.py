"""`marquee cluster ...` and `marquee lease ...` end to end against the fake cluster.

Here rather than in marquee-cli's tests because the fake coordinator lives here.
The commands call asyncio.run, so they run on a worker thread, off the fake's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fake_coordinator import FakeCluster
from typer.testing import CliRunner, Result

from marquee_cli.endpoints import Endpoints, ProcessEndpoint, now, write_endpoints
from marquee_cli.main import app

runner = CliRunner()


async def marquee(*args: str) -> Result:
    return await asyncio.to_thread(runner.invoke, app, list(args))


def endpoints_of(fake: FakeCluster) -> list[str]:
    # A follower first: every command has to find the leader itself.
    return ["--endpoints", ",".join(reversed(fake.endpoints))]


def document(result: Result) -> Any:
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


async def test_cluster_status_names_every_member_and_the_leader(fake: FakeCluster) -> None:
    result = await marquee("cluster", "status", "--json", *endpoints_of(fake))
    assert result.exit_code == 0, result.output
    status = document(result)
    assert status["leader"] == {"id": "coord-1", "address": fake.members[0].address}
    assert [(m["id"], m["address"], m["role"]) for m in status["members"]] == [
        ("coord-1", fake.members[0].address, "leader"),
        ("coord-2", fake.members[1].address, "follower"),
        ("coord-3", fake.members[2].address, "follower"),
    ]
    text = await marquee("cluster", "status", *endpoints_of(fake))
    assert text.exit_code == 0
    assert "leader coord-1 at" in text.stdout
    assert "ROLE" in text.stdout


async def test_cluster_status_reads_targets_from_the_running_suite(
    fake: FakeCluster, tmp_path: Path
) -> None:
    processes = [
        ProcessEndpoint(f"coordinator-{i}", "raft node", 1, grpc=address, metrics="x:1")
        for i, address in enumerate(fake.endpoints, start=1)
    ]
    processes.append(ProcessEndpoint("search", "service", 1, grpc="127.0.0.1:1", metrics="x:1"))
    write_endpoints(
        tmp_path / "endpoints.json",
        Endpoints(launcher_pid=1, started_at=now(), processes=processes),
    )
    result = await marquee("cluster", "status", "--json", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert document(result)["leader"]["id"] == "coord-1"


async def test_without_a_suite_or_endpoints_the_error_is_one_line(tmp_path: Path) -> None:
    result = await marquee("lease", "list", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "no suite running" in result.output
    assert "Traceback" not in result.output


async def test_an_unreachable_cluster_fails_cleanly_within_the_timeout() -> None:
    result = await marquee("cluster", "status", "--endpoints", "127.0.0.1:1", "--timeout", "0.5")
    assert result.exit_code == 1
    assert result.output.startswith("marquee: cluster status: no coordinator answered")
    assert "Traceback" not in result.output


async def test_join_leave_and_transfer(fake: FakeCluster) -> None:
    joined = await marquee(
        "cluster",
        "join",
        "coord-4",
        "--raft-address",
        "127.0.0.1:61000",
        "--grpc-address",
        "127.0.0.1:61001",
        "--json",
        *endpoints_of(fake),
    )
    assert joined.exit_code == 0, joined.output
    assert document(joined)["added"]["id"] == "coord-4"
    again = await marquee(
        "cluster",
        "join",
        "coord-4",
        "--raft-address",
        "127.0.0.1:61000",
        "--grpc-address",
        "127.0.0.1:61001",
        *endpoints_of(fake),
    )
    assert again.exit_code == 1
    assert "is a member" in again.output
    left = await marquee("cluster", "leave", "coord-4", "--json", *endpoints_of(fake))
    assert left.exit_code == 0, left.output
    assert [m["id"] for m in document(left)["members"]] == ["coord-1", "coord-2", "coord-3"]
    moved = await marquee("cluster", "transfer", "coord-2", "--json", *endpoints_of(fake))
    assert moved.exit_code == 0, moved.output
    assert document(moved) == {
        "previous_leader_id": "coord-1",
        "leader": {"id": "coord-2", "address": fake.members[1].address},
    }


async def test_lease_acquire_get_list_release(fake: FakeCluster) -> None:
    target = endpoints_of(fake)
    acquired = await marquee(
        "lease", "acquire", "jobs/a", "--ttl", "30", "--holder", "ops", "--json", *target
    )
    assert acquired.exit_code == 0, acquired.output
    lease = document(acquired)["lease"]
    assert (lease["name"], lease["holder_id"], lease["token"]) == ("jobs/a", "ops", 1)

    taken = await marquee("lease", "acquire", "jobs/a", "--ttl", "30", "--holder", "x", *target)
    assert taken.exit_code == 1
    assert "held by ops" in taken.output

    got = await marquee("lease", "get", "jobs/a", "--json", *target)
    assert document(got)["lease"]["holder_id"] == "ops"
    listed = await marquee("lease", "list", "--prefix", "jobs/", *target)
    assert "jobs/a" in listed.stdout
    assert "ops" in listed.stdout

    wrong = await marquee("lease", "release", "jobs/a", "--token", "7", "--holder", "ops", *target)
    assert wrong.exit_code == 1
    released = await marquee(
        "lease", "release", "jobs/a", "--token", "1", "--holder", "ops", "--json", *target
    )
    assert document(released) == {"released": True}
    gone = await marquee("lease", "get", "jobs/a", *target)
    assert gone.exit_code == 1
    assert "nobody holds" in gone.output
