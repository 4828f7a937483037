"""Fault tests: `marquee up` (a subprocess, free ports, a temporary data dir) restarts
what is killed with -9 (Redis, PostgreSQL, a service, a coordinator node) on the same ports and
data, records it in endpoints.json, and a later `marquee up` on that data dir comes
back on the same ports with a coordinator leader.

Slow (two whole suites start), so one launcher serves the module's tests in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from marquee_localservers import server_data_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MARQUEE = Path(sys.executable).parent / "marquee"
STARTUP_SECONDS = 180.0
# The launcher's own limit, within ours so that its diagnosis is what we report.
LAUNCHER_STARTUP_SECONDS = 150
RESTART_SECONDS = 90.0
STOP_SECONDS = 30.0


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    data_dir: Path
    stderr: Path

    def endpoints(self) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = json.loads((self.data_dir / "endpoints.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return document

    def process_named(self, name: str) -> dict[str, Any]:
        document = self.endpoints()
        assert document is not None, self.diagnostics()
        found: dict[str, Any] = next(p for p in document["processes"] if p["name"] == name)
        return found

    def diagnostics(self) -> str:
        tails = "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:])
            for log in sorted((self.data_dir / "logs").glob("*.log"))
        )
        return f"launcher stderr:\n{self.stderr.read_text()}\n{tails}"

    def wait(self, condition: Callable[[], Any], what: str, seconds: float) -> Any:
        deadline = time.monotonic() + seconds
        while not (result := condition()):
            if self.process.poll() is not None:
                pytest.fail(
                    f"marquee up exited with {self.process.returncode} while waiting "
                    f"for {what}\n{self.diagnostics()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"waited {seconds}s for {what}\n{self.diagnostics()}")
            time.sleep(0.1)
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(STOP_SECONDS) == 0, self.diagnostics()
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def start(data_dir: Path, output: Path) -> Up:
    stderr = output / f"stderr-{time.monotonic_ns()}"
    env = os.environ | {"MARQUEE_UP_RESTART_DELAY": "0.2"}
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                str(MARQUEE),
                "up",
                "--data-dir",
                str(data_dir),
                "--base-port",
                "0",
                "--json",
                # Under load (2 shared cores) a service may take a minute to import.
                "--startup-timeout",
                str(LAUNCHER_STARTUP_SECONDS),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    up = Up(process, data_dir, stderr)
    up.wait(up.endpoints, "endpoints.json", STARTUP_SECONDS)
    return up


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    with server_data_dir("marquee-faults-") as path:
        yield path


@pytest.fixture(scope="module")
def up(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = start(data_dir, tmp_path_factory.mktemp("faults"))
    try:
        yield running
    finally:
        running.stop()


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def kill_and_wait_for_restart(up: Up, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """SIGKILL `name`; its entry before and once restarted (a new pid, one more restart)."""
    before = up.process_named(name)
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        now = up.process_named(name)
        fresh = now["restarts"] == before["restarts"] + 1 and now["pid"] != before["pid"]
        return now if fresh and now["pid"] else None

    after: dict[str, Any] = up.wait(restarted, f"{name} restarted", RESTART_SECONDS)
    assert after["last_exit"] == "killed by SIGKILL"
    assert after["last_restart_at"]
    return before, after


def test_killed_redis_is_restarted_on_its_port(up: Up) -> None:
    before, after = kill_and_wait_for_restart(up, "redis")
    assert after["url"] == before["url"]
    # The cache gateway reconnects: it reports SERVING again once Redis answers.
    gateway = up.process_named("cache-gateway")
    up.wait(lambda: serving(gateway["grpc"]), "cache-gateway SERVING again", RESTART_SECONDS)


def test_killed_postgres_is_restarted_on_its_port(up: Up) -> None:
    before, after = kill_and_wait_for_restart(up, "postgres")
    assert after["url"] == before["url"]
    # Auth (its user) serves again, whether it rode the outage out or was restarted too.
    auth = up.process_named("auth")
    up.wait(
        lambda: serving(up.process_named("auth")["grpc"]), "auth SERVING again", RESTART_SECONDS
    )
    assert up.process_named("auth")["grpc"] == auth["grpc"]


def test_killed_oidc_provider_is_restarted_on_its_port(up: Up) -> None:
    # It joins once the services serve (a first run on a machine installs it).
    up.wait(
        lambda: any(
            p["name"] == "oidc-provider" for p in (up.endpoints() or {}).get("processes", [])
        ),
        "oidc-provider in endpoints.json",
        STARTUP_SECONDS,
    )
    before, after = kill_and_wait_for_restart(up, "oidc-provider")
    assert after["url"] == before["url"]


def test_killed_service_is_restarted_on_its_ports(up: Up) -> None:
    before, after = kill_and_wait_for_restart(up, "search")
    assert (after["grpc"], after["metrics"]) == (before["grpc"], before["metrics"])
    up.wait(lambda: serving(after["grpc"]), "search SERVING again", RESTART_SECONDS)


def test_killed_coordinator_node_rejoins_on_its_raft_address(up: Up) -> None:
    before, after = kill_and_wait_for_restart(up, "coordinator-2")
    assert (after["grpc"], after["raft"]) == (before["grpc"], before["raft"])
    up.wait(lambda: serving(after["grpc"]), "coordinator-2 SERVING again", RESTART_SECONDS)


def test_a_restart_of_the_data_dir_reuses_its_ports(
    up: Up, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = up.endpoints()
    assert first is not None
    up.stop()

    again = start(data_dir, tmp_path_factory.mktemp("again"))
    try:
        second = again.endpoints()
        assert second is not None
        # Everything SERVING (endpoints.json is written only then), coordinators
        # included, which means they elected a leader on their recorded addresses.
        # (The OIDC provider joins after the first publication: not compared.)
        addresses = ("grpc", "metrics", "raft", "url")

        def listing(document: dict[str, Any]) -> list[dict[str, Any]]:
            processes = [p for p in document["processes"] if p["name"] != "oidc-provider"]
            return [{k: p.get(k) for k in ("name", *addresses)} for p in processes]

        assert listing(second) == listing(first)
        assert all(p["restarts"] == 0 for p in second["processes"])
    finally:
        again.stop()
