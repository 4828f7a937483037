"""`marquee lease` against a real coordinator cluster: who holds a lease by default."""

from __future__ import annotations

import getpass
import itertools
import json
import os
import re
import socket

from typer.testing import CliRunner, Result

from marquee_cache_gateway import validation as gateway_validation
from marquee_cli import cache_commands, lease_commands
from marquee_cli.main import app
from marquee_coordinator.raft_config import FAST_TIMING, RaftTiming
from marquee_coordinator.raft_node import MAX_KEY_LENGTH, MAX_LEASE_TTL
from marquee_testing.coordinator import CoordinatorCluster

runner = CliRunner()
_ids = itertools.count()


def lease(cluster: CoordinatorCluster, *args: str) -> Result:
    return runner.invoke(app, ["lease", *args, "--endpoints", ",".join(cluster.endpoints)])


def fresh_name() -> str:
    return f"cli-holder/{os.getpid()}-{next(_ids)}"


def test_the_default_holder_is_unique_per_invocation() -> None:
    first, second = lease_commands.default_holder(), lease_commands.default_holder()
    assert first != second
    user_at_host = re.escape(f"{getpass.getuser()}@{socket.gethostname()}")
    assert re.fullmatch(rf"{user_at_host}:{os.getpid()}-[0-9a-f]{{6}}", first)


def test_two_commands_without_holder_do_not_both_hold_a_lease(
    coordinator_cluster: CoordinatorCluster,
) -> None:
    name = fresh_name()
    first = lease(coordinator_cluster, "acquire", name, "--ttl", "30", "--json")
    assert first.exit_code == 0, first.output
    granted = json.loads(first.stdout)["lease"]

    second = lease(coordinator_cluster, "acquire", name, "--ttl", "30")
    assert second.exit_code == 1, second.output
    assert f"held by {granted['holder_id']}" in second.stderr

    # The token alone names the grant: release needs no --holder.
    wrong = lease(coordinator_cluster, "release", name, "--token", str(granted["token"] + 1))
    assert wrong.exit_code == 1
    released = lease(coordinator_cluster, "release", name, "--token", str(granted["token"]))
    assert released.exit_code == 0, released.output
    assert granted["holder_id"] in released.stdout
    assert lease(coordinator_cluster, "get", name).exit_code == 1


def test_acquire_tells_who_holds_it_and_how_to_release(
    coordinator_cluster: CoordinatorCluster,
) -> None:
    name = fresh_name()
    result = lease(coordinator_cluster, "acquire", name, "--ttl", "5", "--holder", "ops-1")
    assert result.exit_code == 0, result.output
    assert "as ops-1 with token" in result.stdout
    assert f"marquee lease release {name} --token" in result.stdout


def test_the_bounds_are_the_servers() -> None:
    assert lease_commands.MAX_NAME_BYTES == MAX_KEY_LENGTH
    assert lease_commands.MAX_TTL_SECONDS == MAX_LEASE_TTL
    shortest = min(FAST_TIMING.min_lease_ttl, RaftTiming().min_lease_ttl)
    assert shortest == lease_commands.MIN_TTL_SECONDS
    assert cache_commands.MAX_TTL_SECONDS == gateway_validation.MAX_TTL_SECONDS
