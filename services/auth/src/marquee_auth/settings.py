"""Settings of the auth service, read from MARQUEE_AUTH_* variables."""

from typing import Annotated, Self

from pydantic import Field, PostgresDsn, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_platform import ServiceSettings


class AuthSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_AUTH_")

    database_url: PostgresDsn = PostgresDsn("postgresql://marquee@127.0.0.1:5432/marquee")
    # Apply pending migrations on start; without it a replica only checks the schema.
    migrate_on_start: bool = True
    # gRPC addresses of coordinator members, comma-separated in the environment.
    coordinator_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Run the job runtime (the `cleanup` periodic job). Unset: on exactly when
    # coordinator endpoints are configured, as periodic jobs need its leases.
    jobs_enabled: bool | None = None

    @field_validator("coordinator_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return [e.strip() for e in value.split(",") if e.strip()]
        return value

    @model_validator(mode="after")
    def _jobs_need_a_coordinator(self) -> Self:
        if self.jobs_enabled and not self.coordinator_endpoints:
            raise ValueError(
                "jobs_enabled needs coordinator_endpoints (periodic jobs use its leases)"
            )
        return self

    @property
    def run_jobs(self) -> bool:
        if self.jobs_enabled is None:
            return bool(self.coordinator_endpoints)
        return self.jobs_enabled
