"""Settings of the search service, read from MARQUEE_SEARCH_* variables."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from marquee_platform import ServiceSettings


class SearchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_SEARCH_")

    # Where the embedded engine (S-3) keeps its collections.
    data_dir: Path = Path(".data/search")
