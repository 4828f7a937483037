"""Settings of the auth service, read from MARQUEE_AUTH_* variables."""

from pydantic import PostgresDsn
from pydantic_settings import SettingsConfigDict

from marquee_platform import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_AUTH_")

    database_url: PostgresDsn = PostgresDsn("postgresql://marquee@127.0.0.1:5432/marquee")
