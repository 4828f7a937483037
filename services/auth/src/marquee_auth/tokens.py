"""Access tokens (signed JWTs) and refresh tokens (opaque, stored as a hash)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from joserfc import jwt

from marquee_auth.signing_keys import KeyRing
from marquee_authn import ACCESS_TOKEN_ALGORITHM

# Makes a leaked refresh token recognisable in logs and secret scanners.
REFRESH_PREFIX = "mqr_"


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> bytes:
    # The token has 256 bits of entropy: a plain SHA-256 is enough, no slow hash needed.
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime


class AccessTokenIssuer:
    def __init__(self, keys: KeyRing, *, issuer: str, lifetime: timedelta) -> None:
        self._keys = keys
        self._issuer = issuer
        self._lifetime = lifetime

    def issue(self, user_id: str, session_id: str) -> AccessToken:
        now = datetime.now(UTC)
        expires_at = now + self._lifetime
        key = self._keys.current
        claims = {
            "iss": self._issuer,
            "sub": user_id,
            "sid": session_id,
            "typ": "access",
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": ACCESS_TOKEN_ALGORITHM, "kid": key.kid}
        token = jwt.encode(header, claims, key.private, algorithms=[ACCESS_TOKEN_ALGORITHM])
        return AccessToken(token, expires_at.replace(microsecond=0))
