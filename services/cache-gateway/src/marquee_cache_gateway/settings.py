"""Settings of the cache gateway, read from MARQUEE_CACHE_* variables."""

from pydantic import Field, RedisDsn
from pydantic_settings import SettingsConfigDict

from marquee_platform import ServiceSettings


class CacheSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_CACHE_")

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    # True: redis_url is any node of a Redis Cluster (the others are discovered).
    redis_cluster: bool = False

    # Deadlines and recovery (seconds). Every Redis call is bounded by the command
    # timeout, so an UNAVAILABLE answer never takes longer than that.
    redis_command_timeout: float = Field(default=0.25, gt=0, le=10)
    redis_connect_timeout: float = Field(default=0.5, gt=0, le=10)
    tracking_heartbeat_interval: float = Field(default=0.5, gt=0, le=10)
    tracking_reconnect_max_delay: float = Field(default=1.0, gt=0, le=60)
    breaker_reset_timeout: float = Field(default=1.0, gt=0, le=60)

    # L1
    l1_max_entries: int = Field(default=100_000, ge=1)
    l1_max_ttl: float = Field(default=300.0, gt=0)
    negative_ttl: float = Field(default=30.0, ge=0)

    # Request limits
    max_key_bytes: int = Field(default=1024, ge=1, le=65_536)

    # How often the Redis state is mirrored into gRPC health.
    health_interval: float = Field(default=0.1, gt=0, le=10)
