"""Who a verified access token speaks for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class InvalidToken(Exception):
    """The token is missing, malformed, badly signed, expired or not for us; str() says which."""


@dataclass(frozen=True)
class Identity:
    subject: str
    session_id: str
    expires_at: float
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
