"""Settings of the cache gateway, read from MARQUEE_CACHE_* variables."""

from pydantic import RedisDsn
from pydantic_settings import SettingsConfigDict

from marquee_platform import ServiceSettings


class CacheSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_CACHE_")

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
