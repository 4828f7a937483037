"""Settings of one coordinator node, read from MARQUEE_COORDINATOR_* variables."""

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from marquee_coordinator.raft_config import check_address
from marquee_platform import ServiceSettings

__all__ = ["CoordinatorSettings", "check_address"]


class CoordinatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_COORDINATOR_")

    node_id: int = Field(default=1, ge=1)
    raft_address: str = "127.0.0.1:50250"
    # Raft addresses of the other members, comma-separated in the environment.
    peers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    data_dir: Path = Path(".data/coordinator")
    # Authenticates the Raft transport (K-9): without it pysyncobj unpickles
    # whatever reaches its port.
    cluster_secret: SecretStr | None = None
    # Outside the dev profile MemberAdd, MemberRemove and TransferLeadership need
    # this as gRPC metadata `authorization: Bearer <token>` (admin_auth.py); unset,
    # the cluster secret is the admin credential.
    admin_token: SecretStr | None = None
    # The gRPC address callers are sent to when they reach a follower (and the one
    # recorded for this member); defaults to grpc_host:grpc_port.
    advertise_address: str | None = None
    # "fast": short Raft timeouts for loopback clusters and tests (see raft_config).
    raft_timing: Literal["default", "fast"] = "default"
    # Answer plain renewals on the serving leader under a Raft leader lease, with
    # no log entry (docs/coordinator-timing.md, "Leader-local renewal"). Every
    # member should run with the same value; a member without it gives the
    # leader no lease, and renewals then go through the log.
    local_renewal: bool = True

    @field_validator("raft_address")
    @classmethod
    def _raft_address(cls, value: str) -> str:
        return check_address(value)

    @field_validator("advertise_address")
    @classmethod
    def _advertise_address(cls, value: str | None) -> str | None:
        return check_address(value) if value is not None else None

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (unset it to use the cluster secret)")
        return value

    @property
    def admin_credential(self) -> str | None:
        """What the admin calls must present; None (open) in the dev profile only."""
        if self.profile == "dev":
            return None
        token = self.admin_token or self.cluster_secret
        # The model validator makes sure a cluster secret exists outside dev.
        assert token is not None
        return token.get_secret_value()

    @property
    def client_address(self) -> str | None:
        """Where this node's callers reach it; None while the gRPC port is left to chance."""
        if self.advertise_address:
            return self.advertise_address
        return f"{self.grpc_host}:{self.grpc_port}" if self.grpc_port else None

    @field_validator("peers", mode="before")
    @classmethod
    def _split_peers(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("peers")
    @classmethod
    def _peer_addresses(cls, value: list[str]) -> list[str]:
        return [check_address(p) for p in value]

    @model_validator(mode="after")
    def _secret_outside_dev(self) -> Self:
        if self.profile != "dev" and self.cluster_secret is None:
            raise ValueError("cluster_secret is required outside the dev profile")
        return self
