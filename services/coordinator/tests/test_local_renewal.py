"""Renewals answered by the serving leader under its leader lease (LOCAL_RENEWAL).

docs/coordinator-timing.md, "Leader-local renewal", gives the argument; these
tests attack it with real node processes: a renewal queued at a leader while it
is paused past the TTL, a failover right after local renewals, and the
transport's bookkeeping of who acknowledged what.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from coordinator_cluster import Cluster, NodeCallError
from lease_history import Hold, check_holds
from test_raft_cluster import RETRYABLE, TTL, events_of, lease, on_leader

from marquee_coordinator.expiry import Deadlines
from marquee_coordinator.leader_lease import ECHO, SENT, TRANSFER, LeaseTransport, lease_window
from marquee_coordinator.state import EventKind, Lease, LeaseEvent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, local_renewal=True)
    try:
        yield cluster
    finally:
        cluster.close()


def test_renewals_on_the_leader_write_nothing_and_survive_a_failover(cluster: Cluster) -> None:
    cluster.start()
    leader = cluster.wait_serving_leader()
    held = lease(leader.call("acquire", name="job", holder="a", ttl=TTL))
    time.sleep(0.3)  # a heartbeat round: the followers' echoes give the leader its lease
    revisions = {
        lease(leader.call("renew", name="job", holder="a", token=held.token)).revision
        for _ in range(20)
    }
    # Answered locally: no log entry, so no new revision and no `renewed` event.
    assert revisions == {held.revision}
    assert leader.status()["revision"] == held.revision
    assert [e.kind for e in events_of(leader, since=held.revision)] == []

    lease(leader.call("renew", name="job", holder="a", token=held.token))
    leader.kill()
    new = cluster.wait_serving_leader()
    # The new leader never heard of the local renewals; it restarts the deadline at its
    # election, after the last one was sent, so the lease outlives the client's window.
    survived = lease(on_leader(cluster, "renew", name="job", holder="a", token=held.token))
    assert survived.token == held.token
    assert new.call("get", name="job")["token"] == held.token
    # Someone else's renewal is refused as ever (answered through the log).
    with pytest.raises(NodeCallError) as other:
        on_leader(cluster, "renew", name="job", holder="b", token=held.token)
    assert other.value.kind == "LeaseNotHeld"


def test_a_renewal_queued_at_a_paused_leader_is_refused_after_it_resumes(
    cluster: Cluster,
) -> None:
    """The leader is stopped with a renewal on its way; the others elect, let the
    lease expire and grant it again; on SIGCONT the old leader's event loop may run
    before its Raft thread hears of the new term. Its lease is stale, so it must not
    answer that renewal itself."""
    cluster.start()
    old = cluster.wait_serving_leader()
    holds: list[Hold] = []
    sent = time.monotonic()
    held = lease(old.call("acquire", name="job", holder="a", ttl=TTL))
    holds.append(Hold("job", "a", held.token, sent, sent + TTL - 0.1))
    time.sleep(0.3)
    sent = time.monotonic()
    lease(old.call("renew", name="job", holder="a", token=held.token))
    holds.append(Hold("job", "a", held.token, sent, sent + TTL - 0.1))

    old.signal(signal.SIGSTOP)
    queued: dict[str, Any] = {}

    def renew_at_the_paused_leader() -> None:
        queued["sent"] = time.monotonic()
        try:
            queued["lease"] = old.call(
                "renew", name="job", holder="a", token=held.token, timeout=30
            )
        except NodeCallError as exc:
            queued["error"] = exc.kind
        except OSError as exc:
            queued["error"] = repr(exc)

    caller = threading.Thread(target=renew_at_the_paused_leader)
    caller.start()
    try:
        new = cluster.wait_serving_leader()
        assert new is not old
        # Nobody renews through the new leader: it expires the lease, then b takes it.
        deadline = time.monotonic() + 4 * TTL + 5
        while new.call("get", name="job") is not None:
            assert time.monotonic() < deadline, "the new leader never expired the lease"
            time.sleep(0.05)
        sent = time.monotonic()
        taken = lease(new.call("acquire", name="job", holder="b", ttl=TTL))
        holds.append(Hold("job", "b", taken.token, sent, sent + TTL - 0.1))
        assert taken.token > held.token
    finally:
        old.signal(signal.SIGCONT)
        caller.join(timeout=40)
    assert not caller.is_alive()
    if "lease" in queued:  # it claimed a renewal: the client would hold until sent + TTL
        holds.append(Hold("job", "a", held.token, queued["sent"], queued["sent"] + TTL - 0.1))
    check_holds(holds)
    assert queued.get("error") in RETRYABLE | {"LeaseNotHeld"}, queued
    assert lease(on_leader(cluster, "get", name="job")).holder == "b"


# --- the transport's bookkeeping, message by message (no sockets) --------------------


class _Node:
    def __init__(self, address: str) -> None:
        self.id = address
        self.address = address


class _Recorder(LeaseTransport):
    """LeaseTransport with pysyncobj's sending and dispatch replaced by recorders."""

    def __init__(self, others: list[_Node], guard: float = 0.3) -> None:
        # TCPTransport's constructor opens sockets: set up only what our layer uses.
        self.guard = guard
        self.window = lease_window(guard)
        self._echoes = {}
        self._handed_over_term = -1
        self._answering = None
        self._acknowledged_at = -math.inf
        self._acknowledged_any = False
        self._ack_lock = threading.Lock()
        self._timeout_now_term = -1
        self.votes_dropped = 0
        self._changes = 0
        self._last_until = None
        self.keepalive = 1.0  # KeepaliveTransport's part
        self.keepalives_sent = 0
        self._last_sent = {}
        self._ready_nodes = set()
        self._nodes = set(others)
        self.held_entries_kept = 0  # LogGuardTransport's part
        self._reported_term = -1
        self.removals_held = set()
        # The SyncObj fields LogGuardTransport reads (its appends carry no entries here).
        self._syncObj = SimpleNamespace(_SyncObj__raftCurrentTerm=0, _SyncObj__raftLeader=None)
        self.sent: list[tuple[_Node, dict[str, Any]]] = []
        self.delivered: list[dict[str, Any]] = []
        self.reply: dict[str, Any] | None = None

    def _deliver(self, node: _Node, message: dict[str, Any]) -> None:
        self.delivered.append(message)
        if self.reply is not None:  # pysyncobj answers an append_entries synchronously
            self.send(node, self.reply)


def _patch(monkeypatch: pytest.MonkeyPatch) -> None:
    from pysyncobj.transport import TCPTransport

    def fake_send(self: _Recorder, node: _Node, message: dict[str, Any]) -> bool:
        self.sent.append((node, message))
        return True

    def fake_received(self: _Recorder, node: _Node, message: dict[str, Any]) -> None:
        self._deliver(node, message)

    monkeypatch.setattr(TCPTransport, "send", fake_send)
    monkeypatch.setattr(TCPTransport, "dropNode", lambda self, node: self._nodes.discard(node))
    monkeypatch.setattr(TCPTransport, "_onMessageReceived", fake_received)


def test_the_leader_lease_needs_a_majority_of_echoes_at_its_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _patch(monkeypatch)
    a, b, c, d = (_Node(f"n{i}") for i in range(4))
    leader = _Recorder([a, b, c, d])  # five members: two followers' echoes needed
    leader.send(a, {"type": "append_entries", "term": 3})
    stamp = leader.sent[-1][1][SENT]
    assert leader.valid_until(3) == -math.inf
    leader._onMessageReceived(a, {"type": "next_node_idx", ECHO: (3, stamp)})
    assert leader.valid_until(3) == -math.inf  # one follower and the leader: no majority
    leader._onMessageReceived(b, {"type": "next_node_idx", ECHO: (2, stamp + 1)})
    assert leader.valid_until(3) == -math.inf  # an echo of an older term counts for nothing
    leader._onMessageReceived(c, {"type": "next_node_idx", ECHO: (3, stamp - 0.5)})
    # The second-newest echo bounds it: the majority acknowledged sends from then on.
    assert leader.valid_until(3) == pytest.approx(stamp - 0.5 + leader.window)
    assert leader.valid_until(4) == -math.inf
    leader.dropNode(c)  # removed: its echo goes with it, even if it is added back
    leader._nodes.add(c)
    assert leader.valid_until(3) == -math.inf
    leader._onMessageReceived(c, {"type": "next_node_idx", ECHO: (3, stamp - 0.5)})
    leader.send(c, {"type": "timeout_now", "term": 3})
    assert leader.valid_until(3) == -math.inf  # handing over: no lease for the rest of term 3


def test_the_leader_lease_is_worked_out_again_only_after_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """valid_until is asked once per local renewal; echoes come once per heartbeat."""
    _patch(monkeypatch)
    a, b = _Node("n1"), _Node("n2")
    leader = _Recorder([a, b])
    leader.send(a, {"type": "append_entries", "term": 3})
    stamp = leader.sent[-1][1][SENT]
    leader._onMessageReceived(a, {"type": "next_node_idx", ECHO: (3, stamp)})
    first = leader.valid_until(3)
    assert first == pytest.approx(stamp + leader.window)
    worked_out: list[int] = []
    original = leader._valid_until

    def counted(term: int) -> float:
        worked_out.append(term)
        return original(term)

    monkeypatch.setattr(leader, "_valid_until", counted)
    assert [leader.valid_until(3) for _ in range(3)] == [first] * 3
    assert worked_out == []  # nothing changed: the last answer
    assert leader.valid_until(4) == -math.inf  # another term is worked out
    leader._onMessageReceived(b, {"type": "next_node_idx", ECHO: (3, stamp + 0.1)})
    assert leader.valid_until(3) == pytest.approx(stamp + 0.1 + leader.window)
    leader.send(b, {"type": "timeout_now", "term": 3})
    assert leader.valid_until(3) == -math.inf  # a handover is seen at once
    assert worked_out == [4, 3, 3]


def test_a_follower_echoes_the_append_it_answers_and_then_drops_votes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _patch(monkeypatch)
    leader, candidate = _Node("leader"), _Node("candidate")
    follower = _Recorder([leader, candidate], guard=0.2)
    follower.reply = {"type": "next_node_idx", "next_node_idx": 5}
    follower._onMessageReceived(leader, {"type": "append_entries", "term": 7, SENT: 12.5})
    answer = follower.sent[-1][1]
    assert answer[ECHO] == (7, 12.5)
    follower.reply = None

    vote = {"type": "request_vote", "term": 8}
    follower._onMessageReceived(candidate, vote)
    assert follower.votes_dropped == 1
    assert vote not in follower.delivered
    # A transfer's vote passes: the leader stopped answering before it sent TimeoutNow.
    follower._onMessageReceived(candidate, {**vote, TRANSFER: True})
    assert follower.delivered[-1][TRANSFER] is True
    time.sleep(0.25)
    follower._onMessageReceived(candidate, vote)
    assert follower.delivered[-1] is vote  # past the guard: pysyncobj decides as ever

    # A node told to campaign by its leader marks its RequestVote as a transfer's,
    # for the next term only: a later campaign of its own is an ordinary one.
    follower._onMessageReceived(leader, {"type": "timeout_now", "term": 7})
    follower.send(leader, {"type": "request_vote", "term": 8})
    assert follower.sent[-1][1][TRANSFER] is True
    follower.send(leader, {"type": "request_vote", "term": 9})
    assert TRANSFER not in follower.sent[-1][1]


def test_a_local_renewal_never_overtakes_an_expiry() -> None:
    deadlines = Deadlines()
    held = Lease("job", "a", 1, 2.0, revision=5)
    deadlines.on_event(LeaseEvent(5, EventKind.ACQUIRED, held), now=100.0)
    assert deadlines.renew_locally(held, now=101.0)
    assert deadlines.deadline("job") == 103.0
    assert not deadlines.renew_locally(held, now=103.5)  # its deadline passed
    assert [d.name for d in deadlines.due(103.5)] == ["job"]
    deadlines.on_event(
        LeaseEvent(6, EventKind.RENEWED, Lease("job", "a", 1, 2.0, revision=6)), 103.6
    )
    assert not deadlines.renew_locally(held, now=103.7)  # the state moved on: revision 6
    renewed = Lease("job", "a", 1, 2.0, revision=6)
    assert deadlines.renew_locally(renewed, now=103.7)
    assert deadlines.due(105.0) == []
    assert [d.revision for d in deadlines.due(105.8)] == [6]
    assert not deadlines.renew_locally(renewed, now=105.0)  # an Expire is in flight


def test_a_restarted_node_guards_until_it_is_known_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """It may have acknowledged a leader just before it went down and kept no record."""
    _patch(monkeypatch)
    leader, candidate = _Node("leader"), _Node("candidate")
    node = _Recorder([leader, candidate])
    node._acknowledged_at = time.monotonic()  # as LeaseTransport.__init__ starts out
    vote = {"type": "request_vote", "term": 1}
    node._onMessageReceived(candidate, vote)
    assert node.votes_dropped == 1
    node.forget_acknowledgements()  # term 0, an empty journal: nothing to remember
    node._onMessageReceived(candidate, vote)
    assert node.delivered[-1] is vote

    node.reply = {"type": "next_node_idx", "next_node_idx": 1}
    node._onMessageReceived(leader, {"type": "append_entries", "term": 1, SENT: 1.0})
    node.forget_acknowledgements()  # too late: it has acknowledged a leader since
    node._onMessageReceived(candidate, {"type": "request_vote", "term": 2})
    assert node.votes_dropped == 2
