"""What the Raft layer does, made visible: elections and leader changes as metrics and logs.

Fed on pysyncobj's tick thread: `on_state_changed` by its onStateChanged
callback, `on_tick` by every tick. Under a starved CPU a leader's heartbeats
come late and followers keep electing; nothing showed that before (issue 9
item 9: 12 elections in a minute went unnoticed). Now every new term is logged,
and a warning names elections that come faster than one per election timeout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import structlog

from marquee_coordinator import metrics
from marquee_coordinator.membership import Role

log = structlog.stdlib.get_logger(__name__)

# The window over which recent elections are counted in the logs.
RECENT_WINDOW = 60.0
# At most one pace warning this often: a storm of elections is one problem.
WARN_EVERY = 10.0


@dataclass(frozen=True, slots=True)
class TooFast:
    term: int
    gap: float  # seconds since the previous new term (0: several terms at once)
    recent: int  # new terms seen in the last RECENT_WINDOW seconds


class ElectionPace:
    """Spots new terms coming faster than one per election timeout.

    A healthy cluster starts a term per failover, and an election needs at
    least one election timeout to end in a new leader before the next one
    starts. Two new terms closer together than that (or several at once)
    mean elections are failing or leaders are lost as soon as elected:
    split votes, or a leader too starved to send heartbeats in time.
    """

    def __init__(self, election_timeout: float) -> None:
        self.election_timeout = election_timeout
        self._term: int | None = None
        self._times: deque[float] = deque()
        self._warned_at: float | None = None

    def observe(self, term: int, now: float) -> TooFast | None:
        """Record the term seen at `now`; a TooFast when a warning is due."""
        if self._term is None:
            self._term = term  # the term the node started in (its journal's): no election seen
            return None
        if term <= self._term:
            return None
        new_terms = term - self._term
        self._term = term
        previous = self._times[-1] if self._times else None
        self._times.extend([now] * new_terms)
        while self._times and self._times[0] < now - RECENT_WINDOW:
            self._times.popleft()
        gap = 0.0 if new_terms > 1 or previous is None else now - previous
        if new_terms == 1 and (previous is None or gap >= self.election_timeout):
            return None
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return None
        self._warned_at = now
        return TooFast(term, gap, len(self._times))

    @property
    def term(self) -> int | None:
        """The last term observed; None before the first observation."""
        return self._term


class RaftWatch:
    def __init__(self, node: str, election_timeout: float) -> None:
        self.node = node
        self.pace = ElectionPace(election_timeout)
        self._leadership: tuple[str, int] | None = None  # the last leader known, and its term
        self._campaign_term: int | None = None  # the term of our running candidacy

    def on_state_changed(self, old: Role, new: Role, term: int) -> None:
        """pysyncobj changed our role; `term` is read before a candidacy's term is set."""
        if new is Role.CANDIDATE:
            # pysyncobj becomes candidate first, then moves to the next term.
            self._campaign_term = term + 1
        elif old is Role.CANDIDATE:
            (metrics.WON if new is Role.LEADER else metrics.LOST).inc()
            self._campaign_term = None

    def on_tick(self, now: float, term: int, role: Role, leader: str | None) -> None:
        campaign = self._campaign_term
        if role is Role.CANDIDATE and campaign is not None and term > campaign:
            # Still a candidate at a later term: the last candidacy timed out.
            metrics.TIMED_OUT.inc(term - campaign)
            self._campaign_term = term
        if leader is not None and (leader, term) != self._leadership:
            # A leader known at a new term: a new leadership, even if the same member won.
            self._leadership = (leader, term)
            metrics.LEADER_CHANGES.inc()
            log.info("raft leader known", node=self.node, leader=leader, term=term)
        if self._leadership is None:
            # Until a first leader is known, members that start together may well split
            # their first votes: not worth a warning. The pace is watched from there on.
            return
        known = self.pace.term
        too_fast = self.pace.observe(term, now)
        if known is not None and term > known:
            log.info("new raft term", node=self.node, term=term, role=role.value)
        if too_fast is not None:
            log.warning(
                "elections come faster than one per election timeout: leaders are lost "
                "as soon as elected or votes split (starved CPU, slow disk, a flaky network?)",
                node=self.node,
                term=too_fast.term,
                seconds_since_previous_term=round(too_fast.gap, 3),
                election_timeout=self.pace.election_timeout,
                elections_last_minute=too_fast.recent,
            )
