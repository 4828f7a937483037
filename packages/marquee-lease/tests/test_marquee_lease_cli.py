"""`marquee cluster ...` and `marquee lease ...`: what needs no cluster, or only the fake.

The commands against a cluster (status, join, leave, transfer, the lease
commands) run against the fake and a real cluster in test_marquee_lease_contract.py.
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
    assert document(result)["leader"]["id"] == fake.members[0].id


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
