"""Everything tunable, with defaults that suit a gateway next to its Redis."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class CacheConfig:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str = "marquee-cache-tracking"
    cluster: bool = False
    """host:port is any node of a Redis Cluster; the others are discovered."""

    # L1
    l1_max_entries: int = 100_000
    l1_max_ttl: float = 300.0
    """Upper bound for any L1 entry, even for keys without a Redis TTL."""
    negative_ttl: float = 30.0
    """How long a tracked miss (key absent) may be answered from L1."""

    # Deadlines (seconds): every Redis call has one.
    command_timeout: float = 0.5
    connect_timeout: float = 1.0

    # Tracking connection
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 0.5
    reconnect_base_delay: float = 0.05
    reconnect_max_delay: float = 2.0
    reconnect_fast_delay: float = 0.025
    """For the first `reconnect_fast_window` seconds of an outage, retries are at
    most this far apart: a restarted Redis is back in use within about this long
    (a refused connect costs next to nothing; reads fail until tracking is back)."""
    reconnect_fast_window: float = 5.0

    # Circuit breaker
    breaker_failure_threshold: int = 3
    breaker_reset_timeout: float = 1.0

    # Operations
    scan_batch: int = 500
    max_connections: int = 64

    @classmethod
    def from_url(cls, url: str, **overrides: object) -> CacheConfig:
        """redis://[user:password@]host:port/db, plus any field as a keyword."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", ""):
            raise ValueError(f"unsupported scheme {parts.scheme!r} (TLS is not wired yet)")
        db = parts.path.strip("/")
        fields: dict[str, object] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 6379,
            "db": int(db) if db else 0,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
        }
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]
