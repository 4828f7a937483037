"""Settings of the media service, read from MARQUEE_MEDIA_* variables."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from marquee_platform import ServiceSettings


class MediaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_MEDIA_")

    # The embedded default backend (M-3): objects on local disk.
    storage_dir: Path = Path(".data/media")
