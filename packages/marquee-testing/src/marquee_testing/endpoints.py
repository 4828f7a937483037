"""The address of a backend, whoever started it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


class ServerEndpoint(Protocol):
    """What tests need from any backend; a local RedisServer/PostgresServer also fits."""

    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class Endpoint:
    """A backend we did not spawn as a process ourselves (env URL or container)."""

    url: str
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str, default_port: int) -> Endpoint:
        parts = urlsplit(url)
        return cls(url, parts.hostname or "127.0.0.1", parts.port or default_port)
