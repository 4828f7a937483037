"""Spawning servers never forks through the interpreter's at-fork handlers.

A `preexec_fn` made CPython fork() and run grpc's at-fork handler, which hung CI
inside fork() once grpc threads were alive in the process.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from localservers_support import process_gone

from marquee_localservers import RedisServer
from marquee_localservers.spawning import child_argv

ROOT = Path(__file__).resolve().parents[3]


class ForkCounter:
    """Counts forks that run Python's at-fork handlers (grpc registers one of those)."""

    def __init__(self) -> None:
        self.count = 0
        os.register_at_fork(before=self._before)

    def _before(self) -> None:
        self.count += 1


FORKS = ForkCounter()


class GrpcTraffic:
    """A grpc.aio server and a channel calling it without pause, on their own loop thread."""

    def __init__(self) -> None:
        self.calls = 0
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grpc-traffic", daemon=True)

    def __enter__(self) -> GrpcTraffic:
        self._thread.start()
        assert self._ready.wait(30), "the grpc server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the grpc traffic thread did not stop"

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            self._ready.set()
            while not self._stop.is_set():
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                self.calls += 1
                await asyncio.sleep(0.001)
        await server.stop(None)


@pytest.fixture
def grpc_traffic() -> Iterator[GrpcTraffic]:
    with GrpcTraffic() as traffic:
        yield traffic


@pytest.mark.timeout(180)
def test_servers_start_50_times_beside_live_grpc_without_at_fork_handlers(
    tmp_path: Path, grpc_traffic: GrpcTraffic
) -> None:
    before = FORKS.count
    server = RedisServer(tmp_path / "redis")
    for _ in range(50):
        server.start(timeout=30)
        assert server.is_running()
        server.stop()
    assert FORKS.count == before, "a spawn ran the at-fork handlers: it forked with a callback"
    assert grpc_traffic.calls > 0, "grpc was busy meanwhile"


def test_no_preexec_fn_in_first_party_code() -> None:
    sources = [*ROOT.glob("packages/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    assert sources
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if re.search(r"preexec_fn\s*=|\buser\s*=\s*self\._account", path.read_text())
    ]
    assert not offenders, f"fork with a Python callback in the child: {offenders}"


def test_child_argv_asks_setpriv_for_the_death_signal_on_the_main_thread() -> None:
    argv = child_argv(["redis-server", "--port", "0"], death_signal=signal.SIGTERM)
    assert argv[0].endswith("setpriv")
    assert argv[1:4] == ["--pdeathsig", "TERM", "--"]
    # A shell checks the spawner is still its parent, then execs the command.
    assert argv[4:6] == ["/bin/sh", "-c"]
    assert argv[7] == str(os.getpid())
    assert argv[8:] == ["redis-server", "--port", "0"]


def test_a_child_whose_spawner_is_already_gone_never_runs_its_command(
    tmp_path: Path,
) -> None:
    # The guard as child_argv writes it, told that its parent is another pid.
    marker = tmp_path / "ran"
    argv = child_argv(["touch", str(marker)])
    argv[7] = "1"
    result = subprocess.run(argv, check=False, timeout=30)
    assert result.returncode == 125
    assert not marker.exists()
    ok = subprocess.run(child_argv(["touch", str(marker)]), check=False, timeout=30)
    assert ok.returncode == 0
    assert marker.exists()


def test_child_argv_from_a_worker_thread_asks_for_no_death_signal() -> None:
    result: list[list[str]] = []
    worker = threading.Thread(target=lambda: result.append(child_argv(["true"])))
    worker.start()
    worker.join(10)
    assert result == [["true"]], "a worker thread's end would kill the child"


def test_a_child_dies_with_the_process_that_spawned_it(tmp_path: Path) -> None:
    # A parent that spawns `sleep` through child_argv, prints its pid, then waits.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import subprocess, sys, time
                from marquee_localservers.spawning import child_argv
                child = subprocess.Popen(child_argv(["sleep", "60"]))
                print(child.pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        parent.kill()
        parent.wait(10)
        assert process_gone(child_pid), "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(10)
