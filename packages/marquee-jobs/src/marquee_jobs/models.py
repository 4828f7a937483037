"""What a job is, and how each kind of job is run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Job:
    """One claimed attempt of a job, handed to its kind's handler."""

    id: int
    queue: str
    kind: str
    payload: dict[str, Any]
    attempt: int  # 1 on the first run


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1 after attempt n failed: base * factor^(n-1), capped."""

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.base * self.factor ** max(0, attempt - 1))


Handler = Callable[[Job], Awaitable[None]]


@dataclass(frozen=True)
class Kind:
    """How a kind of job runs. An idempotent cleanup wants few attempts, a notification more."""

    name: str
    handler: Handler
    max_attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float = 60.0  # seconds; the attempt is cancelled after this and counts as failed

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"kind {self.name!r}: max_attempts must be at least 1")
        if self.timeout <= 0:
            raise ValueError(f"kind {self.name!r}: timeout must be positive")
