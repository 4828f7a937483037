"""A single in-process node: the async API, watch, close, configuration and logging (K-5, K-9)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_cluster import free_port
from lease_history import check_events
from raft_attacker import send_unauthenticated_frames

from marquee_coordinator import raft_logging, raft_node
from marquee_coordinator.errors import (
    CoordinatorError,
    EventsCompacted,
    InsecureConfiguration,
    InvalidLeaseRequest,
    LeaseHeld,
)
from marquee_coordinator.raft_clock import raft_now
from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig
from marquee_coordinator.raft_node import LeaseNode
from marquee_coordinator.settings import CoordinatorSettings
from marquee_coordinator.state import EventKind, Lease, LeaseEvent


def config(data_dir: Path, secret: str | None = "s3cret", insecure: bool = False) -> NodeConfig:
    return NodeConfig(
        node_id=1,
        raft_address=f"127.0.0.1:{free_port()}",
        peers=(),
        data_dir=data_dir,
        cluster_secret=secret,
        allow_insecure=insecure,
        timing=FAST_TIMING,
    )


async def until_serving(node: LeaseNode, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not node.status().serving:
            await asyncio.sleep(0.02)


async def until_seen(events: list[LeaseEvent], count: int, timeout: float = 10.0) -> None:
    """The watcher has taken `count` events (they are queued to it before a call returns)."""
    async with asyncio.timeout(timeout):
        while len(events) < count:
            await asyncio.sleep(0.01)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[LeaseNode]:
    node = LeaseNode(config(tmp_path))
    try:
        await until_serving(node)
        yield node
    finally:
        node.close()


async def test_leases_and_watch_on_a_single_node(node: LeaseNode) -> None:
    events: list[LeaseEvent] = []

    async def watch() -> None:
        try:
            async for event in node.watch(since=0):
                events.append(event)
        except EventsCompacted:
            pass  # the node closed

    watcher = asyncio.create_task(watch())
    held = await node.acquire("job", "a", 2.0, request_id="r1")
    with pytest.raises(LeaseHeld):
        await node.acquire("job", "b", 2.0)
    with pytest.raises(InvalidLeaseRequest):
        await node.acquire("job", "b", 0.01)  # shorter than a failover
    # A plain renewal is answered under the leader lease: no entry, no event, no revision.
    assert await node.renew("job", "a", held.token) == held
    # A renewal that changes the TTL goes through the log: a `renewed` event.
    assert (await node.renew("job", "a", held.token, ttl=2.5)).revision > held.revision
    assert await node.list() == (await node.get("job"),)
    await node.release("job", "a", held.token)
    assert (await node.acquire("job", "b", 2.0)).token == held.token + 1
    await until_seen(events, 4)
    node.close()
    await asyncio.wait_for(watcher, 5)
    check_events(events)
    assert [e.kind for e in events] == [
        EventKind.ACQUIRED,
        EventKind.RENEWED,
        EventKind.RELEASED,
        EventKind.ACQUIRED,
    ]


async def test_concurrent_calls_are_group_committed_with_their_own_outcomes(
    node: LeaseNode,
) -> None:
    """Calls arriving together share log entries (Batch) yet are decided one by one."""
    events: list[LeaseEvent] = []
    since = node.status().revision

    async def watch() -> None:
        async for event in node.watch(since=since):
            events.append(event)

    watcher = asyncio.create_task(watch())
    attempts = [(f"job-{i % 10}", f"holder-{i}", f"request-{i}") for i in range(40)]

    async def attempt(name: str, holder: str, request_id: str) -> Lease | None:
        try:
            return await node.acquire(name, holder, 2.0, request_id=request_id)
        except LeaseHeld:
            return None

    entries_before = node.status().commit_index
    first = await asyncio.gather(*(attempt(*a) for a in attempts))
    # Retried with the same request ids (in one batch again): the same grants, no new ones.
    again = await asyncio.gather(*(attempt(*a) for a in attempts))
    entries = node.status().commit_index - entries_before
    assert entries < len(attempts), f"{2 * len(attempts)} calls took {entries} log entries"

    granted = [lease for lease in first if lease is not None]
    assert sorted(lease.name for lease in granted) == [f"job-{i}" for i in range(10)]
    assert {lease.token for lease in granted} == {1}
    assert again == first
    await until_seen(events, 10)
    watcher.cancel()
    check_events(events)
    assert [e.kind for e in events] == [EventKind.ACQUIRED] * 10
    assert [e.revision for e in events] == list(range(since + 1, since + 11))


async def test_leases_falling_due_together_expire_in_a_few_log_entries(node: LeaseNode) -> None:
    """A mass expiry is batched per scan, yet every lease gets its own event and revision."""
    count = 300
    ttl = node.config.timing.min_lease_ttl
    held = await asyncio.gather(*(node.acquire(f"mass-{i}", "gone", ttl) for i in range(count)))
    kept = await node.acquire("kept", "here", 30.0)
    since = node.status().revision
    events: list[LeaseEvent] = []

    async def watch() -> None:
        async for event in node.watch(since=since):
            events.append(event)

    watcher = asyncio.create_task(watch())
    entries_before = node.status().commit_index
    await until_seen(events, count, timeout=ttl + 10)
    entries = node.status().commit_index - entries_before
    watcher.cancel()
    assert [e.kind for e in events] == [EventKind.EXPIRED] * count
    assert sorted(e.lease.name for e in events) == sorted(lease.name for lease in held)
    assert [e.revision for e in events] == list(range(since + 1, since + count + 1))
    # One entry per scan that found leases due (at most 128 each), not one per lease.
    assert entries <= count // 10, f"{count} expiries took {entries} log entries"
    assert [lease.name for lease in node.local_leases()] == ["kept"]
    assert (await node.renew("kept", "here", kept.token)).token == kept.token


async def test_a_data_dir_serves_one_node_at_a_time(node: LeaseNode) -> None:
    with pytest.raises(CoordinatorError, match="locked"):
        LeaseNode(config(node.config.data_dir))


def test_no_secret_is_refused_outside_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InsecureConfiguration):
        LeaseNode(config(tmp_path, secret=None))
    monkeypatch.setenv("MARQUEE_COORDINATOR_PEERS", "127.0.0.1:7001,127.0.0.1:7002")
    monkeypatch.setenv("MARQUEE_COORDINATOR_RAFT_ADDRESS", "127.0.0.1:7001")
    dev = NodeConfig.from_settings(CoordinatorSettings(data_dir=tmp_path))
    assert dev.allow_insecure
    assert dev.cluster_secret is None
    assert dev.peers == ("127.0.0.1:7002",)  # a node does not list itself
    monkeypatch.setenv("MARQUEE_COORDINATOR_PROFILE", "prod")
    monkeypatch.setenv("MARQUEE_COORDINATOR_CLUSTER_SECRET", "s3cret")
    prod = NodeConfig.from_settings(CoordinatorSettings(data_dir=tmp_path))
    assert not prod.allow_insecure
    assert prod.cluster_secret == "s3cret"


async def test_without_a_secret_the_raft_port_runs_network_pickles(tmp_path: Path) -> None:
    """The control for K-9: what the secret protects against is real."""
    insecure = LeaseNode(config(tmp_path / "data", secret=None, insecure=True))
    try:
        marker = tmp_path / "pwned"
        # Sent again until it lands: on a loaded machine the node may not listen yet,
        # or may read a connection only after the sender has hung up.
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert time.monotonic() < deadline, "the frames did not reach the node"
            await asyncio.to_thread(
                send_unauthenticated_frames, insecure.address, member="nobody", marker=marker
            )
            for _ in range(20):
                if marker.exists():
                    break
                await asyncio.sleep(0.05)
    finally:
        insecure.close()


def test_pysyncobj_logs_keep_their_fields(capsys: pytest.CaptureFixture[str]) -> None:
    from marquee_platform.logging import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    fields = raft_logging.install("127.0.0.1:7001")
    try:
        configure_logging("coordinator")
        logging.getLogger("pysyncobj.syncobj").warning("commit index %d beyond %d", 7, 5)
    finally:
        raft_logging.uninstall(fields)
        root.handlers, root.level = saved[0], saved[1]
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "commit index 7 beyond 5"
    assert line["logger"] == "pysyncobj.syncobj"
    assert line["raft_template"] == "commit index %d beyond %d"
    assert line["raft_args"] == [7, 5]
    assert line["raft_node"] == "127.0.0.1:7001"
    assert line["service"] == "coordinator"


def _election_deadline(node: LeaseNode) -> float:
    deadline: float = node._raft._SyncObj__raftElectionDeadline
    return deadline


async def test_a_fresh_node_shortens_its_first_election(tmp_path: Path) -> None:
    """Term 0 (an empty journal): the first timeout is drawn below election_min.

    Its peers are never started: a node connected to nobody does not campaign, so the
    deadline stays as drawn. (A node with a term skips this: `_shorten_first_election`.)
    """
    timing = FAST_TIMING
    assert timing.first_election_max <= timing.election_min
    fresh = NodeConfig(
        node_id=2,
        raft_address=f"127.0.0.1:{free_port()}",
        peers=(f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"),
        data_dir=tmp_path,
        cluster_secret="s3cret",
        timing=timing,
    )
    before = raft_now()
    node = LeaseNode(fresh)
    try:
        assert node.status().term == 0
        # On pysyncobj's clock (CLOCK_MONOTONIC_RAW), which drifts from time.monotonic.
        deadline = _election_deadline(node)
        assert before + timing.first_election_min <= deadline
        assert deadline <= raft_now() + timing.first_election_max
    finally:
        node.close()


async def test_only_the_leader_of_the_term_says_it_is_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart replays the node's old epochs; only the new term's is logged as serving."""
    said: list[str] = []

    class Said:
        def __getattr__(self, level: str) -> Any:
            return lambda event, *args, **fields: said.append(event)

    monkeypatch.setattr(raft_node, "log", Said())
    restarted = config(tmp_path)
    for run in range(2):
        node = LeaseNode(restarted)
        try:
            await until_serving(node)
            assert node.status().term == run + 1
        finally:
            node.close()
        assert said.count("serving as leader") == 1, said
        said.clear()
