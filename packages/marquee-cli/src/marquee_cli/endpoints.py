"""The endpoints file: what a running `marquee up` started and where to reach it.

`marquee up` writes it once everything is healthy and removes it on shutdown;
`marquee status` and `marquee down` read it. Written atomically so a reader
never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ENDPOINTS_FILE = "endpoints.json"


class EndpointsFileError(Exception):
    """The endpoints file exists but cannot be understood."""


@dataclass(frozen=True)
class ProcessEndpoint:
    """One process of the suite: a gRPC service (grpc + metrics) or a backend (url)."""

    name: str
    role: str
    pid: int
    grpc: str | None = None
    metrics: str | None = None
    url: str | None = None
    # A coordinator node's Raft address (reused across runs of one data dir).
    raft: str | None = None
    # Supervision: how often `marquee up` restarted it after an unexpected exit,
    # why it last exited (e.g. "killed by SIGKILL") and when it last restarted.
    # Defaults keep files written before these fields readable.
    restarts: int = 0
    last_exit: str | None = None
    last_restart_at: datetime | None = None

    @property
    def is_service(self) -> bool:
        return self.grpc is not None

    def to_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"name": self.name, "role": self.role, "pid": self.pid}
        if self.is_service:
            fields |= {"grpc": self.grpc, "metrics": self.metrics}
        else:
            fields["url"] = self.url
        if self.raft is not None:
            fields["raft"] = self.raft
        fields |= {
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_restart_at": _iso(self.last_restart_at),
        }
        return fields

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessEndpoint:
        return cls(
            name=str(data["name"]),
            role=str(data["role"]),
            pid=int(data["pid"]),
            grpc=data.get("grpc"),
            metrics=data.get("metrics"),
            url=data.get("url"),
            raft=data.get("raft"),
            restarts=int(data.get("restarts") or 0),
            last_exit=data.get("last_exit"),
            last_restart_at=_parse_time(data.get("last_restart_at")),
        )


@dataclass(frozen=True)
class Endpoints:
    launcher_pid: int
    started_at: datetime
    processes: list[ProcessEndpoint]

    @property
    def services(self) -> list[ProcessEndpoint]:
        return [p for p in self.processes if p.is_service]

    def to_json(self) -> dict[str, Any]:
        return {
            "launcher_pid": self.launcher_pid,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoints:
        return cls(
            launcher_pid=int(data["launcher_pid"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            processes=[ProcessEndpoint.from_json(p) for p in data["processes"]],
        )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def endpoints_path(data_dir: Path) -> Path:
    return data_dir / ENDPOINTS_FILE


def now() -> datetime:
    return datetime.now(UTC)


def write_endpoints(path: Path, endpoints: Endpoints) -> None:
    """Write via a temporary file in the same directory, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as tmp:
            json.dump(endpoints.to_json(), tmp, indent=2)
            tmp.write("\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        # mkstemp makes it 0600, but addresses and pids are no secret.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_endpoints(path: Path) -> Endpoints:
    """Raises FileNotFoundError when no suite is running, EndpointsFileError when corrupt."""
    text = path.read_text()
    try:
        return Endpoints.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise EndpointsFileError(f"{path}: {exc}") from exc
