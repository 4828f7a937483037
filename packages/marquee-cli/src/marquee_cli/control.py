"""`marquee status` and `marquee down`: look at and stop a suite through its endpoints file."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from marquee_cli.endpoints import Endpoints, ProcessEndpoint, endpoints_path, read_endpoints
from marquee_cli.health import SERVING, UNREACHABLE, process_health

if TYPE_CHECKING:  # psutil loads when a pid is looked at: `down` without a suite never does
    import psutil

LISTENING = "LISTENING"
# started_at is written once everything is healthy, so the launcher must be older;
# a younger process with the same pid is an unrelated one that reused it.
PID_REUSE_SLACK_SECONDS = 1.0


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def launcher_process(endpoints: Endpoints) -> psutil.Process | None:
    """The launcher that wrote `endpoints`, if it is still running."""
    import psutil

    try:
        process = psutil.Process(endpoints.launcher_pid)
        started_before = (
            process.create_time() <= endpoints.started_at.timestamp() + PID_REUSE_SLACK_SECONDS
        )
        if started_before and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.NoSuchProcess:
        pass
    return None


@dataclass(frozen=True)
class ProcessStatus:
    endpoint: ProcessEndpoint
    alive: bool
    # For services the process as a whole (gRPC health ""); LISTENING or UNREACHABLE
    # for backends.
    server_health: str
    # Each service the process serves, by full name, and its own gRPC health status.
    services: dict[str, str] = field(default_factory=dict)

    @property
    def health(self) -> str:
        """SERVING (LISTENING) only if the process and each of its services are."""
        if self.server_health != SERVING:
            return self.server_health
        return next((s for _, s in sorted(self.services.items()) if s != SERVING), SERVING)

    @property
    def ok(self) -> bool:
        return self.alive and self.health in (SERVING, LISTENING)

    def to_json(self) -> dict[str, Any]:
        return self.endpoint.to_json() | {
            "alive": self.alive,
            "health": self.health,
            "server_health": self.server_health,
            "services": self.services,
            "ok": self.ok,
        }


async def process_status(endpoint: ProcessEndpoint, deadline: float = 2.0) -> ProcessStatus:
    alive = pid_alive(endpoint.pid)
    if endpoint.grpc is None:
        return ProcessStatus(endpoint, alive, await _tcp_probe(endpoint.url or "", deadline))
    health = await process_health(endpoint.grpc, deadline=deadline)
    return ProcessStatus(endpoint, alive, health.server, health.services)


async def suite_status(endpoints: Endpoints) -> list[ProcessStatus]:
    return list(await asyncio.gather(*(process_status(p) for p in endpoints.processes)))


async def _tcp_probe(url: str, deadline: float) -> str:
    """Whether a backend accepts connections; its own protocol is not spoken here."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return UNREACHABLE
    try:
        async with asyncio.timeout(deadline):
            _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except (OSError, TimeoutError):
        return UNREACHABLE
    writer.close()
    await writer.wait_closed()
    return LISTENING


StopOutcome = Literal["stopped", "not-running", "stale"]


class StopTimeout(Exception):
    pass


def stop_suite(data_dir: Path, timeout: float) -> tuple[StopOutcome, int | None]:
    """SIGTERM the launcher of the suite in `data_dir` and wait for it to finish stopping.

    Returns what happened and the launcher pid; "stale" means the endpoints file
    outlived its launcher (killed hard) and was removed.
    """
    path = endpoints_path(data_dir)
    try:
        endpoints = read_endpoints(path)
    except FileNotFoundError:
        return "not-running", None
    launcher = launcher_process(endpoints)
    if launcher is None:
        path.unlink(missing_ok=True)
        return "stale", endpoints.launcher_pid
    import psutil

    launcher.send_signal(signal.SIGTERM)
    try:
        launcher.wait(timeout)
    except psutil.TimeoutExpired:
        raise StopTimeout(f"launcher pid {launcher.pid} still running after {timeout:g}s") from None
    return "stopped", launcher.pid
