"""A token-checking resource for fault tests (K-2): what a fenced storage system would do.

Holders of a lease write to it with their fencing token. It accepts a write only
if the token is at least the highest it has seen for that name, and records every
write with the time window it took (start: the holder checked its lease; finish:
it checked again and committed). All times are one process's monotonic clock, so
windows of different holders can be compared.

The store's own rule keeps it safe whatever the coordinator does; the checker is
what tests the coordinator: accepted windows of two grants must never overlap,
and no holder that believed its lease valid may ever be fenced off.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from lease_history import Hold, check_holds


@dataclass(frozen=True)
class Write:
    name: str
    holder: str
    token: int
    started: float
    finished: float
    accepted: bool


@dataclass
class FencedStore:
    writes: list[Write] = field(default_factory=list)
    _highest: dict[str, int] = field(default_factory=dict)

    def write(self, name: str, holder: str, token: int, started: float) -> bool:
        """Commit a write that began at `started`; False if a newer token has written."""
        finished = time.monotonic()
        accepted = token >= self._highest.get(name, 0)
        if accepted:
            self._highest[name] = token
        self.writes.append(Write(name, holder, token, started, finished, accepted))
        return accepted

    def highest(self, name: str) -> int:
        return self._highest.get(name, 0)

    def accepted(self) -> list[Write]:
        return [w for w in self.writes if w.accepted]

    def rejected(self) -> list[Write]:
        return [w for w in self.writes if not w.accepted]

    def accepted_after(self, at: float) -> int:
        return sum(1 for w in self.writes if w.accepted and w.started >= at)


def check_writes(writes: Iterable[Write]) -> None:
    """Raise AssertionError on any safety violation in a store's write history.

    - no write was fenced off: a holder wrote only while its lease was valid, so a
      newer token can never have written before it (a rejection means two holders
      believed they held the name at once);
    - one token of a name belongs to one holder;
    - in acceptance order tokens never go down;
    - accepted windows of distinct grants never overlap, and a later grant has a
      larger token (lease_history.check_holds).
    """
    writes = list(writes)
    fenced = [w for w in writes if not w.accepted]
    assert not fenced, f"{len(fenced)} writes were fenced off, first {fenced[0]}"
    owner: dict[tuple[str, int], str] = {}
    for w in writes:
        holder = owner.setdefault((w.name, w.token), w.holder)
        assert holder == w.holder, f"token {w.token} of {w.name} used by {holder} and {w.holder}"
    by_name: dict[str, list[Write]] = {}
    for w in writes:
        by_name.setdefault(w.name, []).append(w)
    for name, named in by_name.items():
        for before, after in itertools.pairwise(named):
            assert after.token >= before.token, f"{name}: accepted token went down: {after}"
    check_holds(Hold(w.name, w.holder, w.token, w.started, w.finished) for w in writes)
