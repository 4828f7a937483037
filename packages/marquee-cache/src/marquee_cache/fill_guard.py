"""Closing the fill/invalidate race (C-11).

A tracked read's reply and the invalidation for a later write arrive in order on
the tracking connection, but the coroutine that fills L1 resumes only after the
reader task may already have processed that invalidation. Redis pushes only once
per tracked key, so a late fill would stay stale until its TTL.

Every tracked read therefore takes a ticket before its command is sent. An
invalidation of the key, a prefix delete, or a reset (flush, disconnect:
`generation` bumps) marks the tickets in flight as stale, and `settle` refuses to
fill from a stale ticket. A spurious invalidation costs one miss, never staleness.
"""

from __future__ import annotations

from collections.abc import Iterable


class Ticket:
    __slots__ = ("generation", "key", "stale")

    def __init__(self, key: str, generation: int) -> None:
        self.key = key
        self.generation = generation
        self.stale = False


class FillGuard:
    def __init__(self) -> None:
        self.generation = 0
        self._in_flight: dict[str, list[Ticket]] = {}

    def begin(self, key: str) -> Ticket:
        ticket = Ticket(key, self.generation)
        self._in_flight.setdefault(key, []).append(ticket)
        return ticket

    def settle(self, ticket: Ticket) -> bool:
        """Retire the ticket; True if its reply may still enter L1."""
        tickets = self._in_flight.get(ticket.key)
        if tickets is not None:
            tickets.remove(ticket)
            if not tickets:
                del self._in_flight[ticket.key]
        return not ticket.stale and ticket.generation == self.generation

    def invalidate(self, keys: Iterable[str]) -> None:
        for key in keys:
            for ticket in self._in_flight.get(key, ()):
                ticket.stale = True

    def invalidate_prefix(self, prefix: str) -> None:
        self.invalidate([k for k in self._in_flight if k.startswith(prefix)])

    def reset(self) -> None:
        """Every read in flight is suspect (flush-all, lost tracking)."""
        self.generation += 1

    @property
    def in_flight(self) -> int:
        return sum(len(t) for t in self._in_flight.values())
