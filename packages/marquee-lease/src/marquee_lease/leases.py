"""A held lease: its fencing token, a conservative local validity check, and renewal.

Validity is judged on the local monotonic clock only: a lease renewed by a call
sent at `s` and answered with `remaining` cannot expire on the leader before
`s + remaining` (the leader starts its countdown after receiving the call; see
docs/coordinator-timing.md), so it is trusted until that point minus a margin
that covers clock-rate drift. Nothing here compares wall clocks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from marquee_lease.errors import CoordinatorError, LeaseLost, LeaseUnavailable
from marquee_lease.models import LeaseInfo, RenewResult

# One renewal, given the seconds it may take: a Renew for a lease, a Proclaim of
# the current value for an election's leadership (the lease API may not touch it).
Renewal = Callable[[float], Awaitable[RenewResult]]

log = logging.getLogger(__name__)

# Renew after a third of the TTL: two more attempts fit before it runs out.
RENEW_FRACTION = 1 / 3
# Default safety margin as a share of the TTL (clock-rate drift is far below this).
DEFAULT_MARGIN_FRACTION = 0.1


def default_margin(ttl: float) -> float:
    return ttl * DEFAULT_MARGIN_FRACTION


def granted_time(lease: LeaseInfo | None, ttl: float) -> float:
    """How long a grant or renewal lasts from its send time: `remaining`, at most the TTL.

    Without a reported remaining time the TTL itself is still safe, as the leader
    starts counting it only once the request has reached it.
    """
    if lease is None or lease.remaining <= 0:
        return ttl
    return min(lease.remaining, ttl)


class HeldLease:
    """What `CoordinatorClient.lease()` yields. Stamp writes with `token`; check `valid()`."""

    def __init__(
        self,
        renew: Renewal,
        *,
        name: str,
        holder_id: str,
        token: int,
        ttl: float,
        margin: float,
        sent_at: float,
        remaining: float,
        on_lost: Callable[[HeldLease], object] | None = None,
    ) -> None:
        self.name = name
        self.holder_id = holder_id
        self.token = token
        self.ttl = ttl
        self.margin = margin
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self.renewals = 0
        self._renew = renew
        self._on_lost = on_lost
        self._last_sent_at = sent_at
        self._valid_until = sent_at + remaining - margin

    def valid(self) -> bool:
        """True while the lease is certainly still ours (never a false True; may turn early)."""
        return not self.lost.is_set() and time.monotonic() < self._valid_until

    def time_left(self) -> float:
        """Seconds of local validity left (0 once lost)."""
        if self.lost.is_set():
            return 0.0
        return max(0.0, self._valid_until - time.monotonic())

    def check(self) -> None:
        """Raise LeaseLost unless the lease is valid; call it right before fenced work."""
        if self.lost.is_set():
            raise LeaseLost(self.name, self.token, self.lost_reason or "lost")
        if not self.valid():
            raise LeaseLost(self.name, self.token, "local validity ran out")

    def _renewed(self, sent_at: float, remaining: float) -> None:
        self.renewals += 1
        self._last_sent_at = sent_at
        self._valid_until = sent_at + remaining - self.margin

    def _end(self) -> None:
        """The block is over: the lease is being given up, so it is not valid any more."""
        self._valid_until = -math.inf

    def _mark_lost(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        log.warning("lease %r (token %d) lost: %s", self.name, self.token, reason)
        if self._on_lost is not None:
            try:
                self._on_lost(self)
            except Exception:
                log.exception("on_lost callback of lease %r failed", self.name)

    async def _renew_until_lost(self) -> None:
        """Renew every TTL/3; each renew may take until the validity runs out, no longer."""
        while True:
            next_renewal = self._last_sent_at + self.ttl * RENEW_FRACTION
            await asyncio.sleep(max(0.0, next_renewal - time.monotonic()))
            time_left = self._valid_until - time.monotonic()
            if time_left <= 0:
                self._mark_lost("local validity ran out before a renewal succeeded")
                return
            try:
                result = await self._renew(time_left)
            except LeaseUnavailable as exc:
                self._mark_lost(f"no renewal before the local validity ran out ({exc})")
                return
            except CoordinatorError as exc:
                self._mark_lost(f"renewal failed: {exc}")
                return
            if not result.renewed:
                self._mark_lost("the coordinator refused the renewal")
                return
            self._renewed(result.sent_at, granted_time(result.lease, self.ttl))


@asynccontextmanager
async def kept_alive(
    held: HeldLease, give_up: Callable[[], Awaitable[object]]
) -> AsyncIterator[HeldLease]:
    """Renew `held` in a background task for the duration of the block, then `give_up()`.

    The task is cancelled and awaited before leaving, so nothing outlives the block.
    `give_up` (release or resign) is best effort: the lease expires on its own anyway.
    """
    renewer = asyncio.create_task(held._renew_until_lost(), name=f"renew lease {held.name}")
    try:
        yield held
    finally:
        renewer.cancel()
        # wait() neither raises the task's CancelledError nor swallows our own.
        await asyncio.wait([renewer])
        held._end()
        try:
            await give_up()
        except CoordinatorError as exc:
            log.warning("could not give up lease %r (token %d): %s", held.name, held.token, exc)
