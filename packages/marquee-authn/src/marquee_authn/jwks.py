"""Where verification keys come from: the auth service's GetJwks, or a fixed set."""

from __future__ import annotations

import json
from typing import Protocol

import grpc
from joserfc.jwk import KeySet

from marquee.auth.v1 import auth_pb2, auth_pb2_grpc


class JwksSource(Protocol):
    async def fetch(self) -> KeySet:
        """The currently published verification keys."""
        ...


class StaticJwksSource:
    """A fixed JWKS document (tests, or keys handed over out of band)."""

    def __init__(self, jwks: dict[str, object]) -> None:
        self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]

    async def fetch(self) -> KeySet:
        return self._keys


class GrpcJwksSource:
    """AuthService.GetJwks over `channel`; each fetch is bounded by `timeout` seconds."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 3.0) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._timeout = timeout

    async def fetch(self) -> KeySet:
        response = await self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=self._timeout)
        return KeySet.import_key_set(json.loads(response.jwks_json))
