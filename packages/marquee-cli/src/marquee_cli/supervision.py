"""When `marquee up` restarts a process that died, and when it gives up on it.

Pure bookkeeping, no processes: the launcher asks `Restarts.exited` what to do
and spawns (on its main thread) when the answer comes due.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

ENV_PREFIX = "MARQUEE_UP_"


@dataclass(frozen=True)
class RestartPolicy:
    # Restarts in a row that may fail (the process dies again before it has run
    # `stable_after` seconds) before `marquee up` stops the suite and exits 1.
    # 0: stop the suite at the first unexpected exit.
    max_failed_restarts: int = 5
    # Delay before the first restart, doubled after each failed one up to `max_delay`.
    first_delay: float = 0.5
    max_delay: float = 30.0
    stable_after: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RestartPolicy:
        """The defaults, overridden by MARQUEE_UP_MAX_FAILED_RESTARTS, _RESTART_DELAY,
        _RESTART_MAX_DELAY and _STABLE_SECONDS; ValueError names a bad one."""
        default = cls()
        policy = cls(
            max_failed_restarts=int(_get(env, "MAX_FAILED_RESTARTS", default.max_failed_restarts)),
            first_delay=_get(env, "RESTART_DELAY", default.first_delay),
            max_delay=_get(env, "RESTART_MAX_DELAY", default.max_delay),
            stable_after=_get(env, "STABLE_SECONDS", default.stable_after),
        )
        if policy.max_failed_restarts < 0 or policy.first_delay < 0 or policy.stable_after < 0:
            raise ValueError(f"{ENV_PREFIX}* restart settings must not be negative: {policy}")
        return policy

    def delay(self, failed: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2**failed))


def _get(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw) if isinstance(default, float) else int(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name}={raw!r} is not a number") from None


@dataclass
class Restarts:
    """One process's restart history; times are the launcher's monotonic clock."""

    started_at: float
    count: int = 0
    last_exit: str | None = None
    last_restart_at: datetime | None = None
    # Restarts in a row after which the process died again too soon.
    failed: int = 0
    # When the next restart is due; None while the process runs.
    due: float | None = None

    def exited(self, why: str, at: float, policy: RestartPolicy) -> bool:
        """Note an unexpected exit and schedule the restart; False to give up instead."""
        self.last_exit = why
        # The first life of a process came up healthy, so its death is no failed restart.
        if self.count and at - self.started_at < policy.stable_after:
            self.failed += 1
        else:
            self.failed = 0
        if self.failed >= policy.max_failed_restarts:
            return False
        self.due = at + policy.delay(self.failed)
        return True

    def is_due(self, at: float) -> bool:
        return self.due is not None and at >= self.due

    def restarted(self, at: float, wall: datetime) -> None:
        self.count += 1
        self.started_at = at
        self.last_restart_at = wall
        self.due = None
