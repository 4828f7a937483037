"""A Raft leader lease (Raft thesis §6.4.1) built into pysyncobj's transport.

The serving leader may answer a plain renewal without a log entry only while
no other leader can have been elected (docs/coordinator-timing.md,
"Leader-local renewal"). Two things make that provable, and pysyncobj has
neither, so this transport adds them to the messages it carries:

- **Echoed send times.** The leader stamps every append-entries with its own
  monotonic send time, and a follower's answer (`next_node_idx`, sent
  synchronously while the append-entries is handled) carries that stamp and
  term back. The leader thus knows, for each follower, the latest send time
  that follower acknowledged at the current term, even for answers that sat
  in a socket while the leader was paused. pysyncobj's answers say nothing of
  which request they answer.
- **A vote guard (thesis §4.2.3).** A node that acknowledged a leader less
  than `guard` seconds ago drops a RequestVote unheard: it neither takes the
  higher term nor votes. pysyncobj would grant it at once. A vote sent by the
  target of a planned transfer, for the term right after the one whose leader
  sent it TimeoutNow, is marked and passes; that leader stops answering
  locally (for the rest of its term) before it sends TimeoutNow, and no other
  node can lead the next term once the target does.

So once a majority (the leader counting itself) acknowledged append-entries
sent at or after `h`, no other node can win an election before `h + guard` in
real time: every voter in that majority drops RequestVotes until then, and
none of them times out on its own before `h + election_min`. The leader
answers locally while its clock reads less than `h + window`, where `window`
leaves room for clock-rate drift.

Dropping a message is always safe in Raft (messages may be lost), and extra
keys are ignored by pysyncobj, so a node without this transport simply never
gives the leader a lease: renewals then go through the log.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from marquee_coordinator.raft_log_guard import LogGuardTransport

# Keys added to pysyncobj's message dicts; short, they travel in every heartbeat.
SENT = "mq_sent"  # append_entries: the leader's monotonic send time
ECHO = "mq_echo"  # next_node_idx: (term, sent) of the append_entries it answers
TRANSFER = "mq_transfer"  # request_vote: sent by the target of a planned transfer

# Assumed bound on the relative rate difference of two monotonic clocks over a
# second (NTP-disciplined or not, oscillators drift by ppm; this is 1%).
CLOCK_DRIFT = 0.01


def lease_window(guard: float) -> float:
    """How long after `h` the leader may answer: `guard` shrunk for drift both ways."""
    return guard * (1 - CLOCK_DRIFT) / (1 + CLOCK_DRIFT)


class LeaseTransport(LogGuardTransport):
    """pysyncobj's TCP transport (as LogGuardTransport) plus echoed send times and the vote guard.

    Runs on pysyncobj's tick thread; `valid_until` is read from the event loop
    thread (plain attribute reads, atomic under the GIL).
    """

    def __init__(
        self,
        syncObj: Any,  # pysyncobj's parameter names
        selfNode: Any,
        otherNodes: Any,
        *,
        guard: float,
        keepalive: float,
    ) -> None:
        self.guard = guard
        self.window = lease_window(guard)
        # Leader side: follower address -> (term, send time) it last acknowledged.
        self._echoes: dict[str, tuple[int, float]] = {}
        # Leader side: the term in which this node sent TimeoutNow (no lease in it).
        self._handed_over_term = -1
        # Follower side: the append_entries being handled now (node, term, sent).
        self._answering: tuple[Any, int, float | None] | None = None
        # Follower side: when this node last acknowledged a leader. A restarted
        # node may have acknowledged one just before it went down and remembers
        # nothing of it, so it starts out guarding (see forget_acknowledgements).
        self._acknowledged_at = time.monotonic()
        self._acknowledged_any = False
        self._ack_lock = threading.Lock()  # forget_acknowledgements runs on another thread
        # Follower side: the term whose leader last asked this node to campaign.
        self._timeout_now_term = -1
        self.votes_dropped = 0
        # valid_until's last answer: (changes, term, until). Every change to what it
        # reads bumps _changes after making it, so a stale answer is never reused.
        self._changes = 0
        self._last_until: tuple[int, int, float] | None = None
        super().__init__(syncObj, selfNode, otherNodes, keepalive=keepalive)

    def forget_acknowledgements(self) -> None:
        """For a node that has never seen a term: it cannot have acknowledged anyone."""
        with self._ack_lock:
            if not self._acknowledged_any:
                self._acknowledged_at = -math.inf

    def valid_until(self, term: int) -> float:
        """The monotonic time until which no other leader can exist, as leader of `term`.

        -inf when no majority has acknowledged this term yet, or after a handover
        was started in it. Asked once per local renewal, it changes only when an
        echo arrives (a heartbeat round): the last answer is kept until then.
        """
        changes = self._changes  # read first: a change from here on is seen next time
        last = self._last_until
        if last is not None and last[0] == changes and last[1] == term:
            return last[2]
        until = self._valid_until(term)
        self._last_until = (changes, term, until)
        return until

    def _changed(self) -> None:
        self._changes += 1  # only the tick thread writes; the event loop reads

    def _valid_until(self, term: int) -> float:
        if term == self._handed_over_term:
            return -math.inf
        needed = (len(self._nodes) + 1) // 2  # followers besides this node for a majority
        if needed == 0:
            return math.inf
        echoes = (self._echoes.get(node.id) for node in self._nodes)
        sent = sorted((e[1] for e in echoes if e is not None and e[0] == term), reverse=True)
        if len(sent) < needed:
            return -math.inf
        return sent[needed - 1] + self.window

    def dropNode(self, node: Any) -> None:
        # A member removed, then added again at the same address, is a new
        # process that acknowledged nothing: its predecessor's echo must not count.
        self._echoes.pop(node.id, None)
        super().dropNode(node)
        self._changed()

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        self._changed()

    def send(self, node: Any, message: Any) -> bool:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            message = {**message, SENT: time.monotonic()}
        elif kind == "next_node_idx":
            answering = self._answering
            if answering is not None and answering[0] == node:
                # Before the answer leaves: from here on this node drops votes.
                with self._ack_lock:
                    self._acknowledged_at = time.monotonic()
                    self._acknowledged_any = True
                if answering[2] is not None:
                    message = {**message, ECHO: (answering[1], answering[2])}
        elif kind == "request_vote":
            if message.get("term") == self._timeout_now_term + 1:
                message = {**message, TRANSFER: True}
        elif kind == "timeout_now":
            self._handed_over_term = message["term"]
            self._changed()
        return bool(super().send(node, message))

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries":
            sent = message.get(SENT)
            stamp = sent if isinstance(sent, float) else None
            self._answering = (node, message.get("term", -1), stamp)
            try:
                super()._onMessageReceived(node, message)
            finally:
                self._answering = None
            return
        if kind == "request_vote":
            recent = time.monotonic() - self._acknowledged_at < self.guard
            if recent and not message.get(TRANSFER):
                self.votes_dropped += 1
                return
        elif kind == "timeout_now":
            self._timeout_now_term = message.get("term", -1)
        elif kind == "next_node_idx":
            echo = message.get(ECHO)
            if isinstance(echo, tuple | list) and len(echo) == 2:
                self._echoes[node.id] = (int(echo[0]), float(echo[1]))
                self._changed()
        super()._onMessageReceived(node, message)
