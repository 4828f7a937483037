"""Settings of the media service, read from MARQUEE_MEDIA_* variables."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PostgresDsn, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_platform import ServiceSettings

MIB = 1024 * 1024


class MediaSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_MEDIA_")

    # Where tokens are verified from: auth's GetJwks (production), issuer claim.
    auth_address: str = "127.0.0.1:50051"
    token_issuer: str = "marquee-auth"  # noqa: S105 (a name, not a secret)

    # Storage: "local" is the embedded default (M-3), "s3" any S3 API (M-1).
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path = Path(".data/media")
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "marquee-media"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_path_style: bool = True
    # Every S3 call (one part, one head, one chunk read) is bounded by this many
    # seconds; a slow or dead S3 is then UNAVAILABLE, not a hung RPC.
    s3_timeout: float = Field(default=10.0, gt=0, le=300)
    # Bytes buffered per upload part: with upload_concurrency, this bounds an
    # upload's memory whatever the object's size. S3 wants >= 5 MiB parts.
    upload_part_bytes: int = Field(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    # Parts of one upload sent to S3 at once: an upload holds at most
    # (upload_concurrency + 1) x upload_part_bytes.
    upload_concurrency: int = Field(default=2, ge=1, le=16)
    max_object_bytes: int = Field(default=50 * 1024 * MIB, gt=0)

    # FetchImage (P-6): timeouts in seconds, a size limit enforced while
    # streaming, redirects re-checked one by one, retries only on 5xx/connection.
    fetch_connect_timeout: float = Field(default=3.0, gt=0, le=60)
    fetch_read_timeout: float = Field(default=10.0, gt=0, le=300)
    fetch_total_timeout: float = Field(default=30.0, gt=0, le=600)
    fetch_max_bytes: int = Field(default=20 * MIB, gt=0, le=512 * MIB)
    fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    fetch_retries: int = Field(default=2, ge=0, le=10)
    fetch_backoff: float = Field(default=0.2, ge=0, le=10)
    # SSRF guard: loopback, private, link-local etc. addresses are refused
    # unless this is true (tests serve images from 127.0.0.1).
    fetch_allow_private: bool = False

    # Thumbnails: only these box sizes (each non-zero dimension must be one).
    thumbnail_sizes: list[int] = [32, 64, 128, 256, 320, 480, 640, 1024, 1280]
    thumbnail_concurrency: int = Field(default=2, ge=1, le=64)
    thumbnail_max_source_bytes: int = Field(default=64 * MIB, gt=0)
    # End libvips when the service stops (M-6). libvips cannot restart within a
    # process, so in-process tests that serve many times turn this off.
    libvips_shutdown: bool = True

    # Transcoding (M-5)
    # Session directories; unset: `transcode` beside the objects in storage_dir.
    # Emptied at startup (sessions live in memory: what is there is orphaned).
    transcode_dir: Path | None = None
    transcode_ttl: float = Field(default=300.0, gt=0)
    transcode_max_ttl: float = Field(default=3600.0, gt=0)
    transcode_max_sessions: int = Field(default=4, ge=1, le=256)
    transcode_segment_seconds: float = Field(default=6.0, gt=0, le=60)
    # How long GetSegment waits for a segment still being produced.
    segment_wait: float = Field(default=5.0, ge=0, le=60)
    # Read sources at their native frame rate (ffmpeg -re): live-like pacing
    # that spreads CPU over many sessions; off, ffmpeg runs as fast as it can.
    transcode_realtime: bool = False
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"

    # Periodic housekeeping, a lease-gated marquee-jobs job (one replica at a
    # time): aborts stale S3 multipart uploads / local upload files and removes
    # orphaned transcode directories. It needs media's own database and the
    # coordinator; without them orphans are removed at startup only.
    database_url: PostgresDsn | None = None
    coordinator_endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    migrate_on_start: bool = True
    housekeeping_interval: float = Field(default=300.0, gt=0)
    stale_upload_age: float = Field(default=86_400.0, gt=0)
    orphan_dir_age: float = Field(default=600.0, ge=0)

    @field_validator("coordinator_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return [e.strip() for e in value.split(",") if e.strip()]
        return value

    @property
    def transcode_root(self) -> Path:
        return self.transcode_dir or self.storage_dir / "transcode"
