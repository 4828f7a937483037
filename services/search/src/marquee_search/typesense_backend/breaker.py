"""A circuit breaker: after repeated failures, calls fail at once until a trial call succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitOpen(Exception):
    pass


class CircuitBreaker:
    """Closed until `threshold` consecutive failures; then open for `reset_timeout` seconds.

    Once that has passed one call is let through (half-open): success closes the
    breaker, failure opens it for another `reset_timeout`.
    """

    def __init__(
        self,
        threshold: int,
        reset_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def before_call(self) -> None:
        """Raise CircuitOpen when calls must not go out now."""
        if self._opened_at is None:
            return
        if self._trial_running or self._clock() - self._opened_at < self.reset_timeout:
            raise CircuitOpen("circuit open after repeated failures")
        self._trial_running = True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._trial_running = False
