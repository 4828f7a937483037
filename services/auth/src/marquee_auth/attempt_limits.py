"""Limits on login, TOTP and WebAuthn attempts, per account and per source address.

Counted by the cache's GCRA limiter in Redis, so every auth instance shares one
budget. While Redis is down the limiter's process-local fallback keeps them
limited (each instance then on its own); without a Redis URL only that local
limiter runs.
"""

from __future__ import annotations

import math
from typing import Protocol

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2

from marquee_cache import Decision, LocalLimiter
from marquee_platform.errors import ServiceError


class Limiter(Protocol):
    async def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision: ...


class LocalOnly:
    """The process-local limiter behind the same interface as RateLimiter."""

    def __init__(self) -> None:
        self._local = LocalLimiter()

    async def hit(self, key: str, limit: int, window: float, cost: int = 1) -> Decision:
        return self._local.hit(key, limit, window, cost)


def source_of(peer: str) -> str:
    """The address part of grpc's peer string: "ipv4:1.2.3.4:5" -> "1.2.3.4"."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


class AttemptLimits:
    def __init__(self, limiter: Limiter, *, window: float) -> None:
        self._limiter = limiter
        self._window = window

    async def spend(self, what: str, budgets: dict[str, int]) -> None:
        """Count one attempt against each budget ({key: limit}); RESOURCE_EXHAUSTED if any is spent.

        Every budget is charged, so a refused attempt still counts against the others.
        """
        refused: Decision | None = None
        for key, limit in budgets.items():
            decision = await self._limiter.hit(f"{what}:{key}", limit, self._window)
            if not decision.allowed and (
                refused is None or decision.retry_after > refused.retry_after
            ):
                refused = decision
        if refused is not None:
            wait = max(1, math.ceil(refused.retry_after))
            raise ServiceError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many {what} attempts: try again in {wait} s",
                details=[error_details_pb2.RetryInfo(retry_delay=Duration(seconds=wait))],
            )
