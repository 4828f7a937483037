"""Settings of the search service, read from MARQUEE_SEARCH_* variables."""

from pathlib import Path
from typing import Annotated, Literal, Self

import pydantic
from pydantic import Field, PostgresDsn, SecretStr
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_platform import ServiceSettings
from marquee_search.typesense_backend.connection import parse_url


class SearchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_SEARCH_")

    # "embedded" (tantivy under data_dir, the default) or "typesense" (typesense_url).
    backend: Literal["embedded", "typesense"] = "embedded"
    # Where the embedded engine (S-3) keeps its collections.
    data_dir: Path = Path(".data/search")

    # Typesense (S-2): the URL is parsed with urllib.parse; the key never goes in it.
    typesense_url: str = "http://127.0.0.1:8108"
    typesense_api_key: SecretStr = SecretStr("")
    typesense_connect_timeout: float = Field(default=1.0, gt=0, le=60)
    typesense_read_timeout: float = Field(default=10.0, gt=0, le=600)
    # Extra attempts after a connection failure or a 5xx (never after a 4xx).
    typesense_retries: int = Field(default=2, ge=0, le=10)
    typesense_retry_backoff: float = Field(default=0.05, ge=0, le=10)
    typesense_breaker_threshold: int = Field(default=5, ge=1, le=1000)
    typesense_breaker_reset_timeout: float = Field(default=5.0, gt=0, le=600)
    # Tokens a prefix or typo may expand to (Typesense's default of 4 misses matches).
    typesense_max_candidates: int = Field(default=10_000, ge=4, le=1_000_000)

    # Documents per Index call (the contract allows up to 10000).
    max_documents: int = Field(default=10_000, ge=1, le=10_000)

    # The job queue (marquee-jobs) and the reindex progress table. Unset: no
    # Reindex (it answers FAILED_PRECONDITION naming this setting).
    database_url: PostgresDsn | None = None
    # Apply pending migrations (`jobs`, `search`) on start; else only check them.
    migrate_on_start: bool = True
    # gRPC addresses of coordinator members, comma-separated in the environment:
    # the leases of the queue's `cleanup` job, which search hosts only when
    # jobs_cleanup is on (in the suite auth hosts it for the shared database).
    coordinator_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jobs_cleanup: bool = False
    # A reindex attempt is cancelled after this many seconds and counts as failed.
    reindex_timeout: float = Field(default=3600.0, gt=0)
    # Attempts before a reindex job fails for good (a transient error is retried;
    # a document that no longer fits the schema fails at once).
    reindex_max_attempts: int = Field(default=3, ge=1, le=20)

    # At start, create the `films` demo collection from the shipped catalogue
    # when it is absent (`make run` turns it on).
    demo_catalogue: bool = False

    @pydantic.field_validator("typesense_url")
    @classmethod
    def _parseable(cls, value: str) -> str:
        parse_url(value)
        return value

    @pydantic.field_validator("coordinator_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return [e.strip() for e in value.split(",") if e.strip()]
        return value

    @pydantic.model_validator(mode="after")
    def _cleanup_needs_database_and_coordinator(self) -> Self:
        if self.jobs_cleanup and (self.database_url is None or not self.coordinator_endpoints):
            raise ValueError(
                "jobs_cleanup needs database_url and coordinator_endpoints "
                "(the cleanup job runs under a coordinator lease)"
            )
        return self

    @pydantic.model_validator(mode="after")
    def _typesense_needs_key(self) -> "SearchSettings":
        if self.backend == "typesense" and not self.typesense_api_key.get_secret_value():
            raise ValueError("backend=typesense needs MARQUEE_SEARCH_TYPESENSE_API_KEY")
        return self
