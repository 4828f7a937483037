"""pysyncobj's clock and its deadlines (raft_clock.py): met when due, on the right clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_cluster import free_port
from pysyncobj.monotonic import monotonic as pysyncobj_monotonic

from marquee_coordinator.raft_clock import DeadlinePoller, raft_now, shortened_wait
from marquee_coordinator.raft_config import FAST_TIMING, NodeConfig, RaftTiming
from marquee_coordinator.raft_node import LeaseNode


@pytest.mark.parametrize(
    ("timeout", "now", "due", "expected"),
    [
        (0.05, 10.0, 10.02, 0.021),  # due within the wait: wake just past it
        (0.05, 10.0, 10.2, 0.05),  # due after the wait: the whole wait
        (0.05, 10.0, 9.9, 0.05),  # already past: no shorter wait, or the thread spins
        (0.05, 10.0, 10.0, 0.05),
        (0.05, 10.0, 10.049, 0.05),  # just-past is no later than the wait itself
    ],
)
def test_a_wait_ends_just_past_a_deadline_that_comes_first(
    timeout: float, now: float, due: float, expected: float
) -> None:
    assert shortened_wait(timeout, now, due) == pytest.approx(min(expected, timeout))


def test_raft_now_reads_the_clock_pysyncobj_keeps_its_times_on() -> None:
    # Not time.monotonic: CLOCK_MONOTONIC_RAW drifts from it with uptime.
    first = pysyncobj_monotonic()
    now = raft_now()
    assert first <= now <= pysyncobj_monotonic()


def node_config(
    tmp_path: Path, timing: RaftTiming, node_id: int, address: str, peers: tuple[str, ...]
) -> NodeConfig:
    return NodeConfig(
        node_id=node_id,
        raft_address=address,
        peers=peers,
        data_dir=tmp_path,
        cluster_secret="s3cret",
        timing=timing,
    )


@contextlib.asynccontextmanager
async def serving_cluster(
    tmp_path: Path, size: int, timing: RaftTiming
) -> AsyncIterator[tuple[LeaseNode, list[LeaseNode]]]:
    """`size` nodes in this process, once one serves as leader: (leader, every node)."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(size)]
    nodes: list[LeaseNode] = []
    try:
        for i, a in enumerate(addresses):
            peers = tuple(p for p in addresses if p != a)
            nodes.append(LeaseNode(node_config(tmp_path, timing, i + 1, a, peers)))
        async with asyncio.timeout(10):
            while not any(n.status().serving for n in nodes):
                await asyncio.sleep(0.02)
        yield next(n for n in nodes if n.status().serving), nodes
    finally:
        for node in nodes:
            node.close()


class RecordingPoller:
    """pysyncobj's poller, noting how long each wait was allowed to last."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.waits: list[float] = []
        self.lock = threading.Lock()

    def poll(self, timeout: float) -> None:
        with self.lock:
            self.waits.append(timeout)
        self.inner.poll(timeout)

    def subscribe(self, descr: Any, callback: Any, event_mask: int) -> None:
        self.inner.subscribe(descr, callback, event_mask)

    def unsubscribe(self, descr: Any) -> None:
        self.inner.unsubscribe(descr)


async def test_a_leader_sends_its_heartbeats_when_due_whatever_its_tick(tmp_path: Path) -> None:
    """A tick ten times the heartbeat: the leader still wakes for every heartbeat.

    Before DeadlinePoller a leader slept a whole tick between heartbeats when no
    message woke it, so followers heard from it once a tick.
    """
    timing = dataclasses.replace(FAST_TIMING, heartbeat=0.05, tick=0.5)
    async with serving_cluster(tmp_path, 1, timing) as (node, _):
        poller = node._raft._poller
        assert isinstance(poller, DeadlinePoller)
        recorder = RecordingPoller(poller._poller)
        poller._poller = recorder
        await asyncio.sleep(1.0)
        with recorder.lock:
            waits = list(recorder.waits)
        # ~20 heartbeats a second; a wake-up per tick would be ~2.
        assert len(waits) >= 10, waits
        assert max(waits) <= timing.heartbeat + 0.002, waits
        # The leader's next heartbeat is what it waits for, on pysyncobj's clock.
        due = poller.next_deadline()
        assert 0.0 <= due - raft_now() <= timing.heartbeat + 0.01


async def test_a_follower_waits_for_its_election_deadline_on_pysyncobj_clock(
    tmp_path: Path,
) -> None:
    """A follower's next deadline is its election timeout, read from pysyncobj's field.

    Its peers never start, so it campaigns for nobody and the deadline stays as drawn.
    """
    timing = FAST_TIMING
    peers = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    node = LeaseNode(node_config(tmp_path, timing, 2, f"127.0.0.1:{free_port()}", peers))
    try:
        poller = node._raft._poller
        assert isinstance(poller, DeadlinePoller)
        assert poller.next_deadline() == node._raft._SyncObj__raftElectionDeadline
        assert poller.next_deadline() - raft_now() <= timing.first_election_max
    finally:
        node.close()


async def test_the_leader_reports_a_live_follower_as_just_heard_from(tmp_path: Path) -> None:
    """last_contact (Status, membership checks) is read on pysyncobj's clock.

    On time.monotonic it read as old as the two clocks' drift: 0.26 s after 20 hours
    of uptime on the machine this was written on, more with every day, until every
    follower counted as silent and membership changes were refused for lost quorum.
    """
    timing = FAST_TIMING
    async with serving_cluster(tmp_path, 2, timing) as (leader, nodes):
        follower = next(n for n in nodes if n is not leader)
        await asyncio.sleep(3 * timing.heartbeat)
        view = next(m for m in leader.members() if m.raft_address == follower.address)
        assert view.last_contact is not None
        # It answers every heartbeat; allow one heartbeat more and a scheduling delay.
        assert view.last_contact <= 2 * timing.heartbeat + 0.05, view
        assert follower.address in leader._live_voters()


async def test_a_follower_that_stalled_reads_the_leaders_heartbeats_before_campaigning(
    tmp_path: Path,
) -> None:
    """A follower's tick thread stalls in a message handler past its election timeout.

    A journal write on a slow disk or a large received dump does this. The
    leader's heartbeats queue in the follower's socket meanwhile; pysyncobj
    checks the election deadline before it reads them, so the follower
    campaigned at term + 1 and the healthy leader stepped down on seeing it.
    """
    # Connections and the leader's quorum check outlast the stall: only the election
    # deadline is in play.
    timing = dataclasses.replace(FAST_TIMING, connection_timeout=3.0, leader_fallback=3.0)
    stall = timing.election_max + 0.3
    async with serving_cluster(tmp_path, 3, timing) as (leader, nodes):
        term = leader.status().term
        follower = next(n for n in nodes if n is not leader)
        transport = follower._lease_transport
        assert transport is not None
        handle = transport._onMessageReceivedCallback
        armed = threading.Event()
        armed.set()

        def stalling(node: Any, message: Any) -> None:
            handle(node, message)  # pysyncobj's handler: restarts the election timeout
            heartbeat = isinstance(message, dict) and message.get("type") == "append_entries"
            if heartbeat and armed.is_set():
                armed.clear()
                time.sleep(stall)

        transport._onMessageReceivedCallback = stalling
        await asyncio.sleep(stall + 3 * timing.election_max)
        assert not armed.is_set(), "the follower never stalled"
        assert [n.status().term for n in nodes] == [term] * 3
        assert leader.status().serving
