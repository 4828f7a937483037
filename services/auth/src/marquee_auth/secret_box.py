"""Encryption of secrets at rest (signing keys, TOTP seeds) under the service's key.

AES-256-GCM from `cryptography`, with a random 96-bit nonce per value and the
value's purpose (e.g. the key id) as associated data, so a ciphertext copied
to another row or column does not decrypt there.
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
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> SecretBox:
        if settings.encryption_key is None:
            # Only reachable in the dev profile (AuthSettings refuses it elsewhere).
            return cls(hashlib.sha256(DEV_ENCRYPTION_KEY_SOURCE.encode()).digest())
        # AuthSettings checked it is 32 bytes of base64.
        key = base64.b64decode(settings.encryption_key.get_secret_value())
        return cls(key)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> bytes:
        if not sealed.startswith(_VERSION) or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise SecretBoxError(f"stored secret for {purpose!r} has an unknown format")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, purpose.encode())
        except InvalidTag:
            raise SecretBoxError(
                f"stored secret for {purpose!r} does not decrypt: wrong "
                "MARQUEE_AUTH_ENCRYPTION_KEY, or the value was altered"
            ) from None
