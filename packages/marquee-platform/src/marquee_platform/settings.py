"""Settings every service shares, read from the environment with a per-service prefix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, TypeVar

import pydantic
import pydantic_settings
from pydantic_settings import BaseSettings, SettingsConfigDict

# grpc takes message limits as a C int.
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1


class ServiceSettings(BaseSettings):
    """Subclass per service with `model_config = SettingsConfigDict(env_prefix="MARQUEE_X_")`."""

    model_config = SettingsConfigDict(env_prefix="MARQUEE_")

    grpc_host: str = "127.0.0.1"
    grpc_port: int = pydantic.Field(default=0, ge=0, le=65535, description="0 picks a free port")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = pydantic.Field(
        default=0, ge=-1, le=65535, description="0 picks a free port, -1 disables /metrics"
    )
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otlp_endpoint: str | None = None
    shutdown_grace_seconds: float = pydantic.Field(default=10.0, gt=0)
    profile: Literal["dev", "prod"] = "dev"
    # Per message; -1 is no limit. The defaults are grpc's own: 4 MiB in, none out.
    grpc_max_receive_message_bytes: int = pydantic.Field(
        default=4 * 1024 * 1024, ge=-1, le=GRPC_MAX_MESSAGE_BYTES
    )
    grpc_max_send_message_bytes: int = pydantic.Field(default=-1, ge=-1, le=GRPC_MAX_MESSAGE_BYTES)
    port_file: Path | None = pydantic.Field(
        default=None,
        description="once serving, the bound gRPC port is written here (removed at exit)",
    )

    @pydantic.field_validator("grpc_max_receive_message_bytes", "grpc_max_send_message_bytes")
    @classmethod
    def _a_limit_or_none(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (no limit) or at least 1")
        return value

    @pydantic.field_validator("port_file", mode="before")
    @classmethod
    def _a_path_or_unset(cls, value: object) -> object:
        if value == "":
            raise ValueError("must be a file path (leave it unset for none)")
        return value

    @pydantic.field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return level


S = TypeVar("S", bound=ServiceSettings)


class InvalidSettings(Exception):
    """A setting could not be loaded; str() is one line naming the environment variable."""


def load_settings(settings_cls: type[S]) -> S:
    try:
        return settings_cls()
    except pydantic.ValidationError as exc:
        raise InvalidSettings(_describe(settings_cls, exc)) from None
    except pydantic_settings.SettingsError as exc:
        raise InvalidSettings(f"invalid settings: {exc}") from None


def _describe(settings_cls: type[ServiceSettings], exc: pydantic.ValidationError) -> str:
    prefix = settings_cls.model_config.get("env_prefix", "")
    problems = []
    for error in exc.errors():
        if error["loc"]:
            variable = f"{prefix}{error['loc'][0]}".upper()
            problems.append(f"invalid setting {variable}: {error['msg']}")
        else:  # a check across several settings
            problems.append(f"invalid settings: {error['msg']}")
    return "; ".join(problems)
