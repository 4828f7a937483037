"""Restart bookkeeping, the restart settings and the coordinator start-up diagnosis (fast)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marquee.coordinator.v1 import cluster_pb2
from marquee_cli.startup_diagnosis import describe_status
from marquee_cli.supervision import RestartPolicy, Restarts

WALL = datetime(2025, 1, 2, tzinfo=UTC)
POLICY = RestartPolicy(max_failed_restarts=2, first_delay=1.0, max_delay=3.0, stable_after=10.0)


def test_a_crash_after_a_stable_run_restarts_after_the_first_delay() -> None:
    restarts = Restarts(started_at=0.0)
    assert restarts.exited("killed by SIGKILL", at=100.0, policy=POLICY)
    assert restarts.due == 101.0
    assert not restarts.is_due(100.5)
    assert restarts.is_due(101.0)
    assert (restarts.last_exit, restarts.failed) == ("killed by SIGKILL", 0)


def test_restarts_that_die_young_back_off_then_give_up() -> None:
    restarts = Restarts(started_at=0.0)
    assert restarts.exited("exited with code 3", at=100.0, policy=POLICY)
    restarts.restarted(at=101.0, wall=WALL)
    assert restarts.count == 1
    assert not restarts.is_due(1e9)  # running again
    assert restarts.exited("exited with code 3", at=102.0, policy=POLICY)
    assert restarts.failed == 1
    assert restarts.due == 104.0  # doubled
    restarts.restarted(at=104.0, wall=WALL)
    assert not restarts.exited("exited with code 3", at=105.0, policy=POLICY)
    assert (restarts.failed, restarts.count) == (2, 2)


def test_a_restart_that_lasted_resets_the_failures() -> None:
    restarts = Restarts(started_at=0.0, count=3, failed=1)
    assert restarts.exited("killed by SIGKILL", at=50.0, policy=POLICY)
    assert restarts.failed == 0


def test_zero_failed_restarts_allowed_stops_at_the_first_exit() -> None:
    policy = RestartPolicy(max_failed_restarts=0)
    assert not Restarts(started_at=0.0).exited("exited with code 1", at=100.0, policy=policy)


def test_the_delay_is_capped() -> None:
    assert [POLICY.delay(n) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_policy_from_environment() -> None:
    policy = RestartPolicy.from_env(
        {"MARQUEE_UP_MAX_FAILED_RESTARTS": "7", "MARQUEE_UP_RESTART_DELAY": "0.1"}
    )
    assert (policy.max_failed_restarts, policy.first_delay) == (7, 0.1)
    assert policy.stable_after == RestartPolicy().stable_after
    with pytest.raises(ValueError, match="MARQUEE_UP_MAX_FAILED_RESTARTS='x' is not a number"):
        RestartPolicy.from_env({"MARQUEE_UP_MAX_FAILED_RESTARTS": "x"})
    with pytest.raises(ValueError, match="must not be negative"):
        RestartPolicy.from_env({"MARQUEE_UP_MAX_FAILED_RESTARTS": "-1"})


def _status(*peers: tuple[str, bool], leader: str = "") -> cluster_pb2.StatusResponse:
    me = cluster_pb2.Member(
        raft_address="h:1", role=cluster_pb2.MEMBER_ROLE_CANDIDATE, connected=True
    )
    reply = cluster_pb2.StatusResponse(member=me)
    reply.header.raft_term = 9
    reply.header.leader_id = leader
    reply.members.append(me)
    for address, connected in peers:
        reply.members.append(cluster_pb2.Member(raft_address=address, connected=connected))
    return reply


def test_diagnosis_names_the_peers_it_tried() -> None:
    text = describe_status(_status(("h:2", False), ("h:3", True)), ["h:2", "h:3"])
    assert text == (
        "no leader: it is a candidate at term 9; "
        "Raft peers it tried: h:2 (not connected), h:3 (connected)"
    )


def test_diagnosis_points_at_peers_from_an_earlier_run() -> None:
    text = describe_status(_status(("h:2", True), ("old:7", False), leader="2"), ["h:2"])
    assert text.startswith("a leader it cannot reach: ")
    assert "not given to it by this launcher: old:7 (from its Raft log" in text
