"""Encryption of secrets at rest (signing keys, TOTP seeds) under the service's key.

AES-256-GCM from `cryptography`, with a random 96-bit nonce per value and the
value's purpose (e.g. the key id) as associated data, so a ciphertext copied
to another row or column does not decrypt there. Keys being rotated out
(PREVIOUS_ENCRYPTION_KEYS) still open what they sealed; `reseal` moves such
values to the current key.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from marquee_auth.settings import DEV_ENCRYPTION_KEY_SOURCE, AuthSettings

_NONCE_BYTES = 12
_VERSION = b"\x01"


class SecretBoxError(Exception):
    """A stored secret could not be decrypted: wrong key, or the value was altered."""


class SecretBox:
    def __init__(self, key: bytes, previous: tuple[bytes, ...] = ()) -> None:
        if len(key) != 32 or any(len(k) != 32 for k in previous):
            raise ValueError("an encryption key must be 32 bytes")
        self._aead = AESGCM(key)
        self._previous = tuple(AESGCM(k) for k in previous)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> SecretBox:
        # AuthSettings checked every key is 32 bytes of base64.
        previous = tuple(
            base64.b64decode(k.get_secret_value()) for k in settings.previous_encryption_keys
        )
        if settings.encryption_key is None:
            # Only reachable in the dev profile (AuthSettings refuses it elsewhere).
            return cls(hashlib.sha256(DEV_ENCRYPTION_KEY_SOURCE.encode()).digest(), previous)
        return cls(base64.b64decode(settings.encryption_key.get_secret_value()), previous)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> bytes:
        return self._open(sealed, purpose)[0]

    def reseal(self, sealed: bytes, purpose: str) -> bytes | None:
        """`sealed` sealed again under the current key, or None if it already is."""
        plaintext, current = self._open(sealed, purpose)
        return None if current else self.seal(plaintext, purpose)

    def _open(self, sealed: bytes, purpose: str) -> tuple[bytes, bool]:
        if not sealed.startswith(_VERSION) or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise SecretBoxError(f"stored secret for {purpose!r} has an unknown format")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        for index, aead in enumerate((self._aead, *self._previous)):
            try:
                return aead.decrypt(nonce, body, purpose.encode()), index == 0
            except InvalidTag:
                continue
        raise SecretBoxError(
            f"stored secret for {purpose!r} does not decrypt: wrong "
            "MARQUEE_AUTH_ENCRYPTION_KEY (and PREVIOUS_ENCRYPTION_KEYS), or the value was altered"
        )
