"""KeepaliveTransport's rules, with pysyncobj's sockets replaced by recorders.

The process-level proof (a failover after a quiet spell is decided in one
term) is test_raft_cluster.test_a_failover_after_a_quiet_spell_takes_one_election.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from pysyncobj.transport import TCPTransport

from marquee_coordinator.raft_config import FAST_TIMING, RaftTiming
from marquee_coordinator.raft_transport import KEEPALIVE, KeepaliveTransport, keepalive_interval


class _Node:
    def __init__(self, address: str) -> None:
        self.id = address
        self.address = address


class _Recorder(KeepaliveTransport):
    def __init__(self, others: list[_Node], keepalive: float) -> None:
        # TCPTransport's constructor opens sockets: set up only what this layer uses.
        self.keepalive = keepalive
        self.keepalives_sent = 0
        self._last_sent = {}
        self._ready_nodes = set()
        self._nodes = set(others)
        self.sent: list[tuple[_Node, dict[str, Any]]] = []
        self.delivered: list[dict[str, Any]] = []
        self.connected = True


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    def fake_send(self: _Recorder, node: _Node, message: dict[str, Any]) -> bool:
        if not self.connected:
            return False
        self.sent.append((node, message))
        return True

    monkeypatch.setattr(TCPTransport, "send", fake_send)
    monkeypatch.setattr(TCPTransport, "_onTick", lambda self: None)
    monkeypatch.setattr(TCPTransport, "_onNodeConnected", lambda self, node: None)
    monkeypatch.setattr(TCPTransport, "_onNodeDisconnected", lambda self, node: None)
    monkeypatch.setattr(TCPTransport, "dropNode", lambda self, node: self._nodes.discard(node))
    monkeypatch.setattr(
        TCPTransport,
        "_onMessageReceived",
        lambda self, node, message: self.delivered.append(message),
    )
    return _Recorder([_Node("a"), _Node("b")], keepalive=0.05)


def keepalives(recorder: _Recorder) -> list[str]:
    return sorted(node.id for node, message in recorder.sent if message["type"] == KEEPALIVE)


def test_a_keepalive_goes_only_to_peers_whose_handshake_is_done(recorder: _Recorder) -> None:
    a, b = sorted(recorder._nodes, key=lambda n: n.id)
    recorder._onTick()
    assert keepalives(recorder) == []  # connected at TCP level perhaps, not yet handshaken
    recorder._onNodeConnected(a)
    recorder._onTick()
    assert keepalives(recorder) == ["a"]
    recorder._onNodeDisconnected(a)
    recorder._onNodeConnected(b)
    time.sleep(0.06)
    recorder._onTick()
    assert keepalives(recorder) == ["a", "b"]


def test_other_traffic_makes_a_keepalive_unnecessary(recorder: _Recorder) -> None:
    a, b = sorted(recorder._nodes, key=lambda n: n.id)
    recorder._onNodeConnected(a)
    recorder._onNodeConnected(b)
    recorder._onTick()
    assert keepalives(recorder) == ["a", "b"]
    time.sleep(0.06)
    recorder.send(a, {"type": "append_entries", "term": 1})
    recorder._onTick()
    # b has heard nothing for longer than the interval; a just got an append_entries.
    assert keepalives(recorder) == ["a", "b", "b"]
    assert recorder.keepalives_sent == 3


def test_a_failed_send_is_retried_on_the_next_tick(recorder: _Recorder) -> None:
    a, _ = sorted(recorder._nodes, key=lambda n: n.id)
    recorder._nodes = {a}
    recorder._onNodeConnected(a)
    recorder.connected = False
    recorder._onTick()
    assert recorder.keepalives_sent == 0
    recorder.connected = True
    recorder._onTick()  # not a whole interval later: nothing was sent before
    assert keepalives(recorder) == ["a"]


def test_a_received_keepalive_is_not_handed_to_pysyncobj(recorder: _Recorder) -> None:
    a, _ = sorted(recorder._nodes, key=lambda n: n.id)
    recorder._onMessageReceived(a, {"type": KEEPALIVE})
    recorder._onMessageReceived(a, {"type": "request_vote", "term": 2})
    assert recorder.delivered == [{"type": "request_vote", "term": 2}]


def test_a_dropped_node_gets_no_more_keepalives(recorder: _Recorder) -> None:
    a, b = sorted(recorder._nodes, key=lambda n: n.id)
    recorder._onNodeConnected(a)
    recorder._onNodeConnected(b)
    recorder.dropNode(b)
    recorder._onTick()
    assert keepalives(recorder) == ["a"]


@pytest.mark.parametrize("timing", [RaftTiming(), FAST_TIMING], ids=["default", "fast"])
def test_several_keepalives_fit_in_a_connection_timeout(timing: RaftTiming) -> None:
    # One late or lost keep-alive must not let a live connection be found stale.
    interval = keepalive_interval(timing.connection_timeout)
    assert interval * 3 <= timing.connection_timeout
    assert interval >= timing.tick  # sent from the tick: no finer than it
