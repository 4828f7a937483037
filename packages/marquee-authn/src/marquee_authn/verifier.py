"""Verifying access tokens locally: signature against the cached JWKS, then the claims.

The JWKS is fetched once and again only when a token names a key id we do not
hold (a rotation), at most once per `min_refresh_interval`, so a flood of
tokens with made-up key ids cannot turn into a flood of GetJwks calls.
Verified tokens are remembered until they expire: a caller sends the same
token for many calls, and a dict lookup costs far less than an Ed25519 check.

A token seen for the first time is checked here rather than by joserfc's
`jwt.decode`: the compact form is split and its base64url parts decoded
strictly, the header must name exactly our algorithm and a key id and no
`crit` extension, and the signature is checked with the key's `cryptography`
object, kept per key id. joserfc's general path (registries, header and claim
objects) cost about as much again as the signature itself; joserfc still
parses the JWKS and signs (auth).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from marquee_authn.identity import Identity, InvalidToken
from marquee_authn.jwks import JwksSource

# RFC 9864's fully specified name for EdDSA over Ed25519.
ACCESS_TOKEN_ALGORITHM = "Ed25519"  # noqa: S105  # nosec B105
_BEARER = "bearer "


class KeysUnavailable(Exception):
    """The JWKS could not be fetched: the answer is UNAVAILABLE, not UNAUTHENTICATED."""


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` entry, if there is one."""
    for key, value in metadata or ():
        is_bearer = isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER
        if key == "authorization" and is_bearer:
            assert isinstance(value, str)
            return value[len(_BEARER) :].strip() or None
    return None


class TokenVerifier:
    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str,
        leeway_seconds: float = 5.0,
        min_refresh_interval: float = 1.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._issuer = issuer
        self._leeway = leeway_seconds
        self._min_refresh_interval = min_refresh_interval
        self._cache_size = cache_size
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._refresh_lock = asyncio.Lock()
        self._verified: dict[str, Identity] = {}
        # Key id -> the verification key, for the JWKS held now.
        self._public: dict[str, Ed25519PublicKey] = {}
        # A header's base64url text -> its key id: every token one key signs has the
        # same header, so it is decoded and checked once.
        self._header_kids: dict[str, str] = {}

    def verified(self, token: str) -> Identity | None:
        """The identity of a `token` verified before and not expired since; else None.

        No coroutine: a caller that presents its token again (nearly every call)
        is answered without one. None says nothing about the token: verify() it.
        """
        known = self._verified.get(token)
        if known is not None and self._clock() <= known.expires_at + self._leeway:
            return known
        return None

    async def verify(self, token: str) -> Identity:
        """The identity `token` carries; InvalidToken saying why not, KeysUnavailable."""
        now = self._clock()
        known = self._verified.get(token)
        if known is not None:
            if now <= known.expires_at + self._leeway:
                return known
            del self._verified[token]
        head, body, signature = _parts(token)
        kid = self._header_kids.get(head)
        if kid is None:
            kid = _key_id(head)
            if len(self._header_kids) >= self._cache_size:
                self._header_kids.clear()
            self._header_kids[head] = kid
        key = await self._key(kid)
        try:
            key.verify(_b64decode(signature, "signature"), f"{head}.{body}".encode("ascii"))
        except InvalidSignature:
            raise InvalidToken("access token rejected: bad signature") from None
        claims = _json_object(body, "claims")
        identity = self._check_claims(claims, now)
        if len(self._verified) >= self._cache_size:
            # Drop the oldest entry (dicts keep insertion order).
            del self._verified[next(iter(self._verified))]
        self._verified[token] = identity
        return identity

    def _check_claims(self, claims: dict[str, Any], now: float) -> Identity:
        if claims.get("iss") != self._issuer:
            raise InvalidToken("access token rejected: issued by someone else")
        if claims.get("typ") != "access":
            raise InvalidToken("access token rejected: not an access token")
        expires_at = claims.get("exp")
        if not isinstance(expires_at, int | float):
            raise InvalidToken("access token rejected: no expiry")
        if now > expires_at + self._leeway:
            raise InvalidToken("access token expired")
        not_before = claims.get("nbf", claims.get("iat", 0))
        if isinstance(not_before, int | float) and now + self._leeway < not_before:
            raise InvalidToken("access token rejected: not valid yet")
        subject, session = claims.get("sub"), claims.get("sid")
        if not isinstance(subject, str) or not subject or not isinstance(session, str):
            raise InvalidToken("access token rejected: no subject")
        return Identity(subject, session, float(expires_at), claims)

    async def _key(self, kid: str) -> Ed25519PublicKey:
        public = self._public.get(kid)
        if public is not None:
            return public
        keys = self._keys
        if keys is None or not _holds(keys, kid):
            keys = await self._refresh()
        if not _holds(keys, kid):
            raise InvalidToken(f"access token rejected: unknown signing key {kid!r}")
        key = keys.get_by_kid(kid)
        found: object = key.public_key if isinstance(key, OKPKey) else None
        if not isinstance(found, Ed25519PublicKey):
            raise InvalidToken("access token rejected: key of the wrong type")
        self._public[kid] = found
        return found

    async def _refresh(self) -> KeySet:
        async with self._refresh_lock:
            recently = time.monotonic() - self._fetched_at < self._min_refresh_interval
            if self._keys is not None and recently:
                return self._keys
            try:
                keys = await self._source.fetch()
            except (grpc.aio.AioRpcError, OSError, JoseError, ValueError) as exc:
                if self._keys is not None:
                    return self._keys
                raise KeysUnavailable(f"cannot fetch the verification keys: {exc}") from None
            # A key id the new set no longer holds, or holds with another key, is
            # looked up again.
            self._keys, self._public = keys, {}
            self._fetched_at = time.monotonic()
            return keys


def _holds(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _parts(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("access token rejected: not a JWT")
    return parts[0], parts[1], parts[2]


def _b64decode(part: str, what: str) -> bytes:
    """base64url without padding, strictly: any other character is an error."""
    if "=" in part:  # RFC 7515 2: padding is omitted; a padded form is another token
        raise InvalidToken(f"access token rejected: unreadable {what}")
    try:
        return base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidToken(f"access token rejected: unreadable {what}") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part, what))
    except ValueError:  # bad UTF-8 or JSON
        raise InvalidToken(f"access token rejected: unreadable {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"access token rejected: unreadable {what}")
    return value


def _key_id(head: str) -> str:
    header = _json_object(head, "header")
    if header.get("alg") != ACCESS_TOKEN_ALGORITHM:
        raise InvalidToken(f"access token rejected: algorithm {header.get('alg')!r} not accepted")
    if "crit" in header:  # RFC 7515 4.1.11: extensions we do not understand
        raise InvalidToken("access token rejected: critical header extensions")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("access token rejected: no key id")
    return kid
