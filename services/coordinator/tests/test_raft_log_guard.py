"""A follower keeps the entries it shares with its leader (raft_log_guard.py).

The rewrite is checked on its own, then on a real pysyncobj follower fed the
append-entries a leader sends when a stale answer moved it back: it must keep
its applied entries and the membership changes among them.
"""

from __future__ import annotations

import functools
import logging
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from coordinator_cluster import free_port
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE, _bchr
from pysyncobj.transport import TCPTransport

from marquee_coordinator.raft_log_guard import Acknowledge, LogGuardTransport, keep_held_entries

NO_OP = _bchr(_COMMAND_TYPE.NO_OP)


def entry(index: int, term: int, command: bytes = NO_OP) -> tuple[bytes, int, int]:
    return (command, index, term)


def append(
    prev: int, prev_term: int, entries: list[tuple[bytes, int, int]], *, term: int, commit: int
) -> dict[str, Any]:
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": commit,
        "entries": entries,
        "prevLogIdx": prev,
        "prevLogTerm": prev_term,
    }


# A follower's log: entry 1 (term 0, pysyncobj's first), 2-5 at term 1, 6-7 at term 2.
LOG = [entry(1, 0), *(entry(i, 1) for i in range(2, 6)), entry(6, 2), entry(7, 2)]


def test_new_entries_pass_unchanged() -> None:
    message = append(7, 2, [entry(8, 2), entry(9, 2)], term=2, commit=8)
    assert keep_held_entries(message, LOG) is message
    heartbeat = append(7, 2, [], term=2, commit=7)
    assert keep_held_entries(heartbeat, LOG) is heartbeat


def test_a_mismatched_previous_entry_passes_unchanged() -> None:
    for message in (
        append(7, 1, [], term=3, commit=7),  # another term there: pysyncobj resets the leader
        append(9, 2, [], term=2, commit=7),  # not held at all
        {**append(7, 2, [], term=2, commit=7), "prevLogIdx": None},  # malformed: pysyncobj's
    ):
        assert keep_held_entries(message, LOG) is message


def test_held_entries_are_dropped_up_to_the_first_conflict() -> None:
    message = append(3, 1, [entry(4, 1), entry(5, 1), entry(6, 3), entry(7, 3)], term=3, commit=5)
    rewritten = keep_held_entries(message, LOG)
    assert rewritten == {
        **message,
        "prevLogIdx": 5,
        "prevLogTerm": 1,
        "entries": message["entries"][2:],
    }
    # Past the end of the log: nothing of it is deleted, the new entries follow.
    message = append(5, 1, [entry(6, 2), entry(7, 2), entry(8, 2)], term=2, commit=8)
    assert keep_held_entries(message, LOG) == {
        **message,
        "prevLogIdx": 7,
        "prevLogTerm": 2,
        "entries": [entry(8, 2)],
    }


def test_a_resent_batch_inside_the_log_becomes_a_heartbeat_with_its_answer() -> None:
    message = append(2, 1, [entry(3, 1), entry(4, 1)], term=2, commit=7)
    answer = keep_held_entries(message, LOG)
    assert isinstance(answer, Acknowledge)
    assert answer.next_index == 5
    # The tail past 4 is not known to match: it is not committed through this message.
    assert answer.heartbeat == {"type": "append_entries", "term": 2, "commit_index": 4}
    # A heartbeat from a leader whose log is shorter than this one: the tail stays.
    short = keep_held_entries(append(5, 1, [], term=3, commit=5), LOG)
    assert short == Acknowledge({"type": "append_entries", "term": 3, "commit_index": 5}, 6)


class _Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []


@pytest.fixture
def follower(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SyncObj, _Sent, TCPNode]]:
    """A real pysyncobj node driven by hand: no tick thread, its sends recorded."""
    sent = _Sent()

    def record(self: TCPTransport, node: Any, message: Any) -> bool:
        sent.messages.append(message)
        return True

    monkeypatch.setattr(TCPTransport, "send", record)
    leader = TCPNode(f"127.0.0.1:{free_port()}")
    conf = SyncObjConf(autoTick=False, dynamicMembershipChange=True)
    raft = SyncObj(
        f"127.0.0.1:{free_port()}",
        [leader],
        conf=conf,
        transportClass=functools.partial(LogGuardTransport, keepalive=1.0),
    )
    try:
        yield raft, sent, leader
    finally:
        raft.destroy()


def test_a_follower_keeps_its_applied_entries_when_its_leader_resends_them(
    follower: tuple[SyncObj, _Sent, TCPNode], caplog: pytest.LogCaptureFixture
) -> None:
    raft, sent, leader = follower
    transport = raft._SyncObj__transport
    joined = TCPNode(f"127.0.0.1:{free_port()}")
    membership = _bchr(_COMMAND_TYPE.MEMBERSHIP) + pickle.dumps(["add", joined.id, joined])
    log = [entry(i, 1) for i in range(2, 12)] + [entry(12, 1, membership), entry(13, 1)]
    transport._onMessageReceived(leader, append(1, 0, log, term=1, commit=12))
    raft.doTick(0)  # applies up to the commit index
    assert raft.raftLastApplied == 12
    assert joined in raft.otherNodes
    assert sent.messages[-1] == {
        "type": "next_node_idx",
        "next_node_idx": 14,
        "reset": False,
        "success": True,
    }

    # The leader, moved back by a stale answer, sends entries 2-5 again.
    with caplog.at_level(logging.CRITICAL, logger="pysyncobj"):
        transport._onMessageReceived(leader, append(1, 0, log[:4], term=1, commit=12))
    assert "truncating" not in caplog.text
    assert raft._SyncObj__raftLog[-1][1] == 13
    assert joined in raft.otherNodes  # the membership change past the batch stands
    assert sent.messages[-1] == {
        "type": "next_node_idx",
        "next_node_idx": 6,
        "reset": False,
        "success": True,
    }
    assert raft.raftCommitIndex == 12
    assert transport.held_entries_kept == 1

    # A new leader at term 2 never had entry 13 (not committed): Raft's truncation.
    transport._onMessageReceived(
        leader, append(11, 1, [entry(12, 1, membership), entry(13, 2)], term=2, commit=12)
    )
    assert [(e[1], e[2]) for e in raft._SyncObj__raftLog[-2:]] == [(12, 1), (13, 2)]
    assert joined in raft.otherNodes
    assert sent.messages[-1]["next_node_idx"] == 14
    assert sent.messages[-1]["success"] is True
    assert "truncating" not in caplog.text


def _membership(change: str, node: TCPNode) -> bytes:
    return bytes(_bchr(_COMMAND_TYPE.MEMBERSHIP)) + pickle.dumps([change, node.id, node])


def test_a_follower_replaying_its_leaders_removal_stays_connected_to_it(
    follower: tuple[SyncObj, _Sent, TCPNode],
) -> None:
    """History where the leader's address was removed, then added back (a member
    replaced at its old address), arriving in two batches: the follower must not
    cut itself off from the leader in between."""
    raft, _sent, leader = follower
    transport = raft._SyncObj__transport
    first = [entry(2, 1), entry(3, 1, _membership("rem", leader))]
    transport._onMessageReceived(leader, append(1, 0, first, term=1, commit=3))
    assert leader not in raft.otherNodes  # pysyncobj's view follows the log
    assert leader in transport._nodes  # but the connection stays
    assert transport.removals_held == {leader}
    raft.doTick(0)  # applies entries 2-3: L is still the leader it follows
    assert leader in transport._nodes
    assert transport.removals_held == {leader}
    second = [entry(4, 1, _membership("add", leader)), entry(5, 1)]
    transport._onMessageReceived(leader, append(3, 1, second, term=1, commit=5))
    assert leader in raft.otherNodes
    assert leader in transport._nodes
    assert transport.removals_held == set()

    # A removal that stands: once another node leads, the connection goes.
    transport._onMessageReceived(
        leader, append(5, 1, [entry(6, 1, _membership("rem", leader))], term=1, commit=6)
    )
    assert transport.removals_held == {leader}
    raft.doTick(0)  # applies entries 4-6 (pysyncobj applies their changes again)
    assert leader in transport._nodes
    assert transport.removals_held == {leader}
    other = TCPNode(f"127.0.0.1:{free_port()}")
    # A third member campaigns: no leader is known, and the held one may win.
    vote = {"type": "request_vote", "term": 2, "last_log_index": 6, "last_log_term": 1}
    transport._onMessageReceived(other, vote)
    raft.doTick(0)
    assert leader in transport._nodes
    transport._onMessageReceived(other, append(6, 1, [], term=2, commit=6))
    raft.doTick(0)
    assert leader not in transport._nodes
    assert transport.removals_held == set()


class _Counter(SyncObj):  # type: ignore[misc]
    def __init__(self, address: str, peer: str, transport: Any) -> None:
        conf = SyncObjConf(
            autoTick=False,
            dynamicMembershipChange=True,
            raftMinTimeout=0.1,
            raftMaxTimeout=0.2,
            appendEntriesPeriod=0.02,
        )
        super().__init__(address, [peer], conf=conf, transportClass=transport)
        self.count = 0

    @replicated  # type: ignore[untyped-decorator]
    def add(self) -> int:
        self.count += 1
        return self.count


def _tick_until(nodes: list[_Counter], done: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the two nodes did not get there in time"
        for node in nodes:
            node.doTick(0.005)


def test_a_stale_reset_at_a_real_leader_leaves_its_follower_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two real pysyncobj nodes over TCP: the leader is handed a late "go back to 2"
    answer, as one sent before a catch-up arrives after it, and resends its log."""
    a, b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    transport = functools.partial(LogGuardTransport, keepalive=1.0)
    nodes = [_Counter(a, b, transport), _Counter(b, a, transport)]
    try:
        _tick_until(nodes, lambda: any(n._isLeader() for n in nodes))
        leader = next(n for n in nodes if n._isLeader())
        follower = next(n for n in nodes if n is not leader)
        for _ in range(60):
            leader.add()
        _tick_until(nodes, lambda: follower.count == 60)
        last = follower._SyncObj__raftLog[-1][1]
        (follower_node,) = leader.otherNodes
        with caplog.at_level(logging.CRITICAL, logger="pysyncobj"):
            leader._SyncObj__transport._onMessageReceived(
                follower_node,
                {"type": "next_node_idx", "next_node_idx": 2, "reset": True, "success": False},
            )
            assert leader._SyncObj__raftNextIndex[follower_node] == 2  # it will resend all
            _tick_until(nodes, lambda: leader._SyncObj__raftNextIndex[follower_node] > last)
            for _ in range(5):
                leader.add()
            _tick_until(nodes, lambda: follower.count == 65)
        assert "truncating" not in caplog.text
        assert follower._SyncObj__raftLog[-1][1] == last + 5
        assert follower.raftLastApplied == last + 5
        assert follower._SyncObj__transport.held_entries_kept > 0
    finally:
        for node in nodes:
            node.destroy()
