"""Deadlines and backoff: every call has a deadline, and no retry outlives it."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass


class Deadline:
    """A point on the local monotonic clock by which a call must be over."""

    def __init__(self, at: float) -> None:
        self.at = at

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, so clients that failed together retry apart."""

    initial: float = 0.05
    maximum: float = 1.0
    multiplier: float = 2.0
    # Each delay is drawn from [delay * (1 - jitter), delay].
    jitter: float = 0.5

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            # Jitter only spreads retries; nothing here needs unpredictability.
            yield delay * (1.0 - self.jitter * random.random())  # nosec B311
            delay = min(self.maximum, delay * self.multiplier)
