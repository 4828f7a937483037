"""Access tokens (signed JWTs) and refresh tokens (opaque, stored as a hash)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from marquee_auth.signing_keys import KeyRing, SigningKey
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


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _json(value: Mapping[str, object]) -> bytes:
    # joserfc's own serialisation, so a token is byte for byte what jwt.encode gives.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class AccessTokenIssuer:
    """Signs access tokens as compact JWS (the same bytes as joserfc's `jwt.encode`).

    Written out rather than through joserfc, whose registries and header objects
    cost as much again as the Ed25519 signature: every password login signs one,
    on the cores its argon2 hash needs (`docs/benchmarks.md`, auth).
    """

    def __init__(self, keys: KeyRing, *, issuer: str, lifetime: timedelta) -> None:
        self._keys = keys
        self._issuer = issuer
        self._lifetime = lifetime
        # Key id -> (its header segment, its private key); one entry per key used.
        self._signers: dict[str, tuple[bytes, Ed25519PrivateKey]] = {}

    def _signer(self, key: SigningKey) -> tuple[bytes, Ed25519PrivateKey]:
        signer = self._signers.get(key.kid)
        if signer is None:
            private = key.private.private_key
            if not isinstance(private, Ed25519PrivateKey):
                raise TypeError(f"signing key {key.kid} is not an Ed25519 key")
            header = {"typ": "JWT", "alg": ACCESS_TOKEN_ALGORITHM, "kid": key.kid}
            signer = (_b64(_json(header)), private)
            self._signers[key.kid] = signer
        return signer

    def issue(self, user_id: str, session_id: str) -> AccessToken:
        now = datetime.now(UTC)
        expires_at = now + self._lifetime
        header, private = self._signer(self._keys.current)
        claims: dict[str, object] = {
            "iss": self._issuer,
            "sub": user_id,
            "sid": session_id,
            "typ": "access",
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        signing_input = header + b"." + _b64(_json(claims))
        token = signing_input + b"." + _b64(private.sign(signing_input))
        return AccessToken(token.decode("ascii"), expires_at.replace(microsecond=0))
