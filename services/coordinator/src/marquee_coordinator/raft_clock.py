"""pysyncobj's clock, and waking its tick thread when a Raft deadline falls due.

pysyncobj keeps its times (election deadline, next heartbeat, when each
follower last answered) on its own clock, CLOCK_MONOTONIC_RAW on Linux, not on
time.monotonic: NTP's frequency correction applies to one and not the other,
so they drift apart with uptime (0.26 s after 20 hours on the machine this was
written on, ~2 s a week at that rate). Whatever is compared with those times
reads `raft_now`.

pysyncobj's tick thread checks its deadlines (a follower's election timeout, a
leader's next heartbeat) at the start of each tick, then sleeps in its poller
for a whole tick period unless a message arrives. A deadline that falls due
during that sleep waits for the end of it: with the default 50 ms tick, a
survivor of a crashed leader campaigns on average 25 ms after its election
timeout, and a leader's 100 ms heartbeats go out every 100-150 ms. Waking at
the deadline instead costs at most one extra wake-up per heartbeat or election
timeout.

DeadlinePoller wraps the poller the SyncObj waits in and shortens each wait to
the node's next deadline, read from pysyncobj's own fields (the version is
pinned; `test_raft_clock.py` checks the fields it reads). When a follower's
election deadline has passed, it also reads what has arrived before the tick
that would campaign: pysyncobj checks the deadline first and reads messages
after, so a follower whose thread stalled in a message handler campaigned
with the leader's heartbeats still unread in its socket.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.monotonic import monotonic as _pysyncobj_monotonic


def raft_now() -> float:
    """Now, on the clock of pysyncobj's own times."""
    now: float = _pysyncobj_monotonic()
    return now


# pysyncobj's _RAFT_STATE.LEADER.
_LEADER = 2
# Past the deadline when the wait ends, even with the poller's millisecond rounding.
_SLACK = 0.001


def shortened_wait(timeout: float, now: float, due: float) -> float:
    """How long to wait for events: `timeout`, cut short to just past `due` if that comes first.

    A deadline already past (a follower that may not campaign because it has
    no connection, say) does not shorten the wait: pysyncobj checks it at every
    tick anyway, and waiting 0 would spin.
    """
    left = due - now
    if 0.0 < left < timeout:
        return left + _SLACK
    return timeout


class DeadlinePoller:
    """pysyncobj's poller, with each wait ending at the SyncObj's next Raft deadline."""

    def __init__(self, poller: Any, raft: Any) -> None:
        self._poller = poller
        self._raft = raft

    def poll(self, timeout: float) -> None:
        if timeout > 0.0:
            timeout = shortened_wait(timeout, raft_now(), self.next_deadline())
        self._poller.poll(timeout)
        raft = self._raft
        if raft._SyncObj__raftState != _LEADER and raft._SyncObj__raftElectionDeadline < raft_now():
            # The next tick starts by campaigning, before it reads anything. If this
            # thread stalled in a message handler (a journal write, a received dump)
            # the leader's heartbeats have queued meanwhile: read them first, or a
            # healthy leader is deposed by a follower that did hear from it.
            self._poller.poll(0.0)

    def next_deadline(self) -> float:
        """When the node must act next: its next heartbeat as leader, else its election."""
        raft = self._raft
        if raft._SyncObj__raftState == _LEADER:
            due: float = raft._SyncObj__newAppendEntriesTime
        else:
            due = raft._SyncObj__raftElectionDeadline
        return due

    def subscribe(self, descr: Any, callback: Any, event_mask: int) -> None:
        self._poller.subscribe(descr, callback, event_mask)

    def unsubscribe(self, descr: Any) -> None:
        self._poller.unsubscribe(descr)
