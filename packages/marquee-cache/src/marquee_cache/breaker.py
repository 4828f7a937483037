"""A circuit breaker for Redis calls.

Hand-written (~60 lines) because the maintained libraries do not fit: `circuitbreaker`
and `pybreaker` are decorator/sync oriented and expose no cheap state query for
health(); `aiobreaker` has had no release since 2021. This one is a plain state
machine with no I/O and no lock (one event loop owns it).

closed --N consecutive failures--> open --reset_timeout--> half_open
half_open lets one probe through: success closes, failure reopens.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from time import monotonic

from marquee_cache import metrics


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        reset_timeout: float = 1.0,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open, only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._opened_at = self._clock()
            self._transition(BreakerState.OPEN)

    def abandon(self) -> None:
        """The call was cancelled: it proved nothing, but must not hold the probe slot."""
        self._probing = False

    def _transition(self, state: BreakerState) -> None:
        self._state = state
        metrics.BREAKER_TRANSITIONS.labels(state.value).inc()
