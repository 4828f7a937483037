"""Supervision and start-up diagnosis of the launcher in-process, with real Redis and
PostgreSQL and stand-in services (a bare health server) where the real ones are not needed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from marquee_cli import launcher, processes
from marquee_cli.health import SERVING, check_health
from marquee_cli.launcher import Launcher, LaunchOptions
from marquee_cli.supervision import RestartPolicy
from marquee_localservers import server_data_dir

CRASH_MARKER = "MARQUEE_TEST_CRASH_MARKER"
# Serves grpc.health.v1 SERVING on its MARQUEE_*_GRPC_PORT until SIGTERM; exits 3
# at once while the file named by MARQUEE_TEST_CRASH_MARKER exists.
STAND_IN = """
import os, signal, sys, threading
from concurrent import futures
marker = os.environ.get("MARQUEE_TEST_CRASH_MARKER")
if marker and os.path.exists(marker):
    print("stand-in: crashing at start as told", flush=True)
    sys.exit(3)
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
port = next(v for k, v in os.environ.items() if k.endswith("_GRPC_PORT"))
server = grpc.server(futures.ThreadPoolExecutor(2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port("127.0.0.1:" + port)
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("stand-in: serving", flush=True)
stop.wait()
server.stop(0)
"""
ENDPOINTS_SECONDS = 60.0


def use_stand_ins(
    monkeypatch: pytest.MonkeyPatch, real: Callable[[Mapping[str, str]], bool]
) -> None:
    """Spawn a stand-in instead of each service whose environment `real` refuses."""

    def spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> Any:
        return processes.spawn(
            argv if real(env) else [sys.executable, "-c", STAND_IN], env, log_path
        )

    monkeypatch.setattr(launcher, "spawn", spawn)


async def wait_for(condition: Any, what: str, seconds: float = ENDPOINTS_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds}s for {what}")
        await asyncio.sleep(0.05)
    return result


def endpoint(data_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        document = json.loads((data_dir / "endpoints.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    found: dict[str, Any] = next(p for p in document["processes"] if p["name"] == name)
    return found


@pytest.mark.timeout(240)
def test_a_killed_service_comes_back_and_one_that_keeps_dying_stops_the_suite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_stand_ins(monkeypatch, real=lambda env: False)
    policy = RestartPolicy(max_failed_restarts=2, first_delay=0.1, stable_after=60.0)
    with server_data_dir() as data_dir:
        marker = data_dir / "crash"
        monkeypatch.setenv(CRASH_MARKER, str(marker))
        suite = Launcher(
            LaunchOptions(data_dir=data_dir, base_port=0, coordinators=1, restart_policy=policy)
        )
        code = asyncio.run(_kill_then_crash(suite, data_dir, marker))

    stderr = capsys.readouterr().err
    assert code == 1, stderr
    assert "!!! auth (pid" in stderr
    assert "killed by SIGKILL; restarting it in 0.1s !!!" in stderr
    assert "giving up after 2 failed restarts in a row" in stderr
    [auth] = [s for s in suite.services if s.spec.name == "auth"]
    # The first restart was killed too before it had run `stable_after`: a failed one.
    assert auth.restarts.count == 2
    assert auth.restarts.last_exit == "exited with code 3"
    assert all(service.exited() for service in suite.services)
    assert suite.redis is not None
    assert not suite.redis.is_running()


async def _kill_then_crash(suite: Launcher, data_dir: Path, marker: Path) -> int:
    run = asyncio.create_task(suite.run())
    first = await wait_for(lambda: endpoint(data_dir, "auth"), "endpoints.json")
    os.kill(first["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        auth = endpoint(data_dir, "auth")
        return auth if auth and auth["restarts"] == 1 and auth["pid"] != first["pid"] else None

    again = await wait_for(restarted, "auth's restart in endpoints.json")
    assert again["last_exit"] == "killed by SIGKILL"
    assert again["last_restart_at"]
    assert again["grpc"] == first["grpc"]
    deadline = time.monotonic() + ENDPOINTS_SECONDS
    while await check_health(again["grpc"], deadline=1.0) != SERVING:
        assert time.monotonic() < deadline, "the restarted auth never answered SERVING"
        await asyncio.sleep(0.1)

    # Now every restart dies at once: two failed restarts, then the suite stops.
    marker.touch()
    os.kill(again["pid"], signal.SIGKILL)
    return await asyncio.wait_for(run, ENDPOINTS_SECONDS)


@pytest.mark.timeout(240)
def test_a_coordinator_without_a_leader_says_so_with_the_peers_it_tried(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # coordinator-2 is a stand-in without Raft: the real coordinator-1 never finds a quorum.
    use_stand_ins(monkeypatch, real=lambda env: env.get("MARQUEE_COORDINATOR_NODE_ID") == "1")
    with server_data_dir() as data_dir:
        suite = Launcher(
            LaunchOptions(data_dir=data_dir, base_port=0, coordinators=2, startup_timeout=20)
        )
        assert asyncio.run(suite.run()) == 1

    stderr = capsys.readouterr().err
    [_, node_2] = [s for s in suite.services if s.spec.node_id]
    assert node_2.raft is not None
    assert "coordinator-1 failed to start: not SERVING after 20s (health: " in stderr
    assert "no leader" in stderr
    assert node_2.raft in stderr.split("coordinator-1 failed to start", 1)[1]
