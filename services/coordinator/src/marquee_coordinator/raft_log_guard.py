"""A follower keeps the log entries and the connection it shares with its leader.

Two pysyncobj 0.3.17 behaviours, each of which cut a member replaced at its
old address off from its leader in a fault soak (docs/operations.md): it
campaigned for the rest of the run and the others never heard it.

**Held entries.** Raft deletes a follower's entries only from the first one
whose term differs from the leader's (§5.3). pysyncobj deletes everything
after the append's `prevLogIdx` whenever the follower holds more, identical
entries included. That happens when a leader sends entries again: an answer
that was on its way while the leader caught the follower up ("reset", from a
heartbeat sent before the catch-up) moves the leader's next index back, and
the leader resends entries the follower already applied. The follower then
deletes applied entries (pysyncobj logs CRITICAL "truncating already-applied
log entries"), entries its leader may already count as stored there, and
rolls back the membership changes among them.

So before pysyncobj reads an append-entries, this transport drops the entries
at its head that the follower already holds with the same term, and moves
`prevLogIdx` up past them. What is left starts at the first entry that is new
or conflicts, where pysyncobj's truncation is Raft's. When everything sent is
already held and the follower's log goes further, no rewrite can stop
pysyncobj from deleting that tail, so the message reaches pysyncobj as a bare
heartbeat (term, leader, election deadline) and this transport sends the
success answer pysyncobj would have sent.

**The leader's connection.** A member catching up applies the membership
changes of the entries it receives, old ones included, and pysyncobj drops
the connection of each member they remove. Where members were replaced at
their old addresses, the history holds "remove the address of the leader now
sending" and, later, "add it" again (and pysyncobj applies each such entry
twice: when it is appended, and when it is applied). Whenever the follower
gets to the removal before the "add", it has cut itself off from its leader,
and since only the member with the higher address connects, neither side
connects again. So the removal of the leader this node follows is held
back: the connection stays while that node leads, a later "add" of it undoes
the removal, and otherwise the removal takes effect once another node leads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from marquee_coordinator.raft_transport import KeepaliveTransport

log = structlog.stdlib.get_logger(__name__)

# The fields of an append-entries that carry log entries and where they go.
_LOG_FIELDS = ("prevLogIdx", "prevLogTerm", "entries")


@dataclass(frozen=True)
class Acknowledge:
    """Hand `heartbeat` to pysyncobj, then answer success up to `next_index` - 1."""

    heartbeat: dict[str, Any]
    next_index: int


def term_at(log: Any, index: int) -> int | None:
    """The term of entry `index` in a pysyncobj journal, None when it is not there."""
    first: int = log[0][1]
    if index < first or index > log[-1][1]:
        return None
    term: int = log[index - first][2]
    return term


def keep_held_entries(message: dict[str, Any], log: Any) -> dict[str, Any] | Acknowledge:
    """`message` (an append-entries with `prevLogIdx`) as pysyncobj should read it on `log`."""
    prev, prev_term = message["prevLogIdx"], message["prevLogTerm"]
    if not isinstance(prev, int) or term_at(log, prev) != prev_term:
        return message  # pysyncobj asks the leader to go back, as Raft does
    entries = message.get("entries") or []
    held = 0
    for _command, index, term in entries:
        if term_at(log, index) != term:
            break
        held += 1
    if held:
        prev, prev_term = entries[held - 1][1], entries[held - 1][2]
        entries = entries[held:]
    if entries or prev == log[-1][1]:
        if not held:
            return message
        return {**message, "prevLogIdx": prev, "prevLogTerm": prev_term, "entries": entries}
    # All it sent is held and the log goes further. The tail past `prev` is not
    # known to match, so it must not count as committed through this message.
    heartbeat = {k: v for k, v in message.items() if k not in _LOG_FIELDS}
    heartbeat["commit_index"] = min(message["commit_index"], prev)
    return Acknowledge(heartbeat, prev + 1)


class LogGuardTransport(KeepaliveTransport):
    """Runs on pysyncobj's tick thread, as the transport it extends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Append-entries that would have deleted entries this node holds.
        self.held_entries_kept = 0
        self._reported_term = -1  # one log line per term, not one per resent batch
        # Removals of the leader this node follows: kept connected for now.
        self.removals_held: set[Any] = set()
        super().__init__(*args, **kwargs)

    def dropNode(self, node: Any) -> None:
        # pysyncobj applies a membership entry twice: when it is appended and when
        # it is applied (on the tick thread, after the append-entries): both hold.
        if node == self._syncObj._SyncObj__raftLeader:
            self.removals_held.add(node)
            log.info("an entry removes the leader this node follows: kept connected", node=node.id)
            return
        self.removals_held.discard(node)
        super().dropNode(node)

    def addNode(self, node: Any) -> None:
        if node in self.removals_held:
            self.removals_held.discard(node)  # still connected: the removal is undone
            return
        super().addNode(node)

    def _onTick(self) -> None:
        super()._onTick()
        if self.removals_held:
            # Not while no leader is known: a vote request of a third member clears
            # it, and the node held may well win that election and send the "add".
            leader = self._syncObj._SyncObj__raftLeader
            for node in [n for n in self.removals_held if leader is not None and n != leader]:
                self.removals_held.discard(node)
                super().dropNode(node)

    def _kept(self, message: dict[str, Any]) -> None:
        self.held_entries_kept += 1
        term = message.get("term", -1)
        if term != self._reported_term:
            self._reported_term = term
            log.info(
                "leader resent log entries this node holds: kept them",
                term=term,
                resent_from=message["prevLogIdx"] + 1,
                last_index=self._syncObj._SyncObj__raftLog[-1][1],
            )

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if (
            isinstance(message, dict)
            and message.get("type") == "append_entries"
            and "prevLogIdx" in message
            # A large entry split across messages: left to pysyncobj (ours are small).
            and "transmission" not in message
            # One of an older term is refused by pysyncobj, unanswered.
            and message.get("term", -1) >= self._syncObj._SyncObj__raftCurrentTerm
        ):
            rewritten = keep_held_entries(message, self._syncObj._SyncObj__raftLog)
            if isinstance(rewritten, Acknowledge):
                self._kept(message)
                super()._onMessageReceived(node, rewritten.heartbeat)
                self.send(
                    node,
                    {
                        "type": "next_node_idx",
                        "next_node_idx": rewritten.next_index,
                        "reset": False,
                        "success": True,
                    },
                )
                return
            if rewritten is not message:
                self._kept(message)
            message = rewritten
        super()._onMessageReceived(node, message)
