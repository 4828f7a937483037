"""How long the `marquee` command takes to start, next to the floors it cannot go below.

Each figure is the wall time of one fresh process, from spawn to exit, as a
person at a shell sees it, and beside it the process's CPU time (user + system),
which load from elsewhere on a shared machine moves much less:

- `marquee --help`, next to `python -c "import typer"` (the library floor);
- `marquee status` with no suite running (reads endpoints.json, exits 1);
- `marquee status` against one live service (a grpc.health.v1 server with
  reflection, run here in a thread): imports grpc, asks reflection which services
  it serves and checks each one's health;
- `marquee cache get` against a port where nothing listens: everything a cache
  command imports (grpc, the cache protos) and one refused connection;
- `marquee lease get` against a missing suite: the coordinator commands' start-up
  up to the point where they would connect.

The peer of the commands with options is a one-command typer app with one option
(typer coerces option values through pydantic, which it imports for the purpose):
what any typer command costs before doing anything. Last, importing
`marquee_cli.launcher` (what every command paid before the imports went lazy) next
to the same floor. Each round runs every pair back to back, alternating which side
goes first; figures are medians over BENCH_ROUNDS rounds, with their spread.

Target: 0.3 s for the commands that do not start the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, Row, from_runs, print_results
from marquee_cli.endpoints import Endpoints, ProcessEndpoint, now, write_endpoints
from marquee_localservers import free_port

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
VENV_BIN = Path(sys.executable).parent
MARQUEE = str(VENV_BIN / "marquee")
PYTHON = sys.executable
TARGET_SECONDS = 0.3
TYPER_FLOOR = [PYTHON, "-c", "import typer"]
# A typer command with one option, invoked with it: typer's whole per-command cost.
TYPER_COMMAND_FLOOR = [
    PYTHON,
    "-c",
    "import typer\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def main(name: str = typer.Option('x')) -> None:\n"
    "    pass\n"
    "app()",
    "--name",
    "y",
]


@contextmanager
def service() -> Iterator[str]:
    """A health server that serves one application service, as every Marquee service does."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    names = ["bench.v1.Demo", health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    servicer.set("bench.v1.Demo", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@dataclass(frozen=True)
class Run:
    wall: float
    # user + system CPU of the process: what it costs by itself, which other load on
    # the machine moves far less than the wall time.
    cpu: float


def run_once(argv: Sequence[str], expect: int) -> Run:
    began = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != expect:
        raise RuntimeError(f"{' '.join(argv)} exited {child.returncode}, expected {expect}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime)


def pair_runs(
    ours: Sequence[str], ours_exit: int, peer: Sequence[str], load: LoadLog
) -> tuple[list[Run], list[Run]]:
    run_once(ours, ours_exit)  # warm the page cache and .pyc files once
    run_once(peer, 0)
    mine: list[Run] = []
    theirs: list[Run] = []
    for r in range(ROUNDS):
        load.sample()
        if r % 2:
            theirs.append(run_once(peer, 0))
            mine.append(run_once(ours, ours_exit))
        else:
            mine.append(run_once(ours, ours_exit))
            theirs.append(run_once(peer, 0))
    return mine, theirs


def figures(
    empty: str, suite_dir: str, nothing: str
) -> list[tuple[str, list[str], int, list[str]]]:
    """(figure, marquee argv, its expected exit code, peer argv)."""
    return [
        ("marquee --help (s)", [MARQUEE, "--help"], 0, TYPER_FLOOR),
        (
            "marquee status, no suite (s)",
            [MARQUEE, "status", "--data-dir", empty],
            1,
            TYPER_COMMAND_FLOOR,
        ),
        (
            "marquee status, one live service (s)",
            [MARQUEE, "status", "--data-dir", suite_dir],
            0,
            TYPER_COMMAND_FLOOR,
        ),
        (
            "marquee cache get, refused connection (s)",
            [MARQUEE, "cache", "get", "k", "--address", nothing],
            1,
            TYPER_COMMAND_FLOOR,
        ),
        (
            "marquee lease get, no suite (s)",
            [MARQUEE, "lease", "get", "k", "--data-dir", empty],
            1,
            TYPER_COMMAND_FLOOR,
        ),
        (
            "import marquee_cli.launcher (s)",
            [PYTHON, "-c", "import marquee_cli.launcher"],
            0,
            TYPER_FLOOR,
        ),
    ]


def main() -> None:
    load = LoadLog()
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory() as empty,
        tempfile.TemporaryDirectory() as suite_dir,
        service() as address,
    ):
        demo = ProcessEndpoint("demo", "service", os.getpid(), grpc=address, metrics="x:1")
        write_endpoints(
            Path(suite_dir) / "endpoints.json",
            Endpoints(launcher_pid=os.getpid(), started_at=now(), processes=[demo]),
        )
        for figure, ours, ours_exit, peer in figures(empty, suite_dir, f"127.0.0.1:{free_port()}"):
            mine, theirs = pair_runs(ours, ours_exit, peer, load)
            wall = from_runs(figure, [r.wall for r in mine], [r.wall for r in theirs], "s")
            cpu = from_runs(
                figure.replace("(s)", "CPU (s)"),
                [r.cpu for r in mine],
                [r.cpu for r in theirs],
                "s",
            )
            rows += [wall, cpu]
    bare = [run_once([PYTHON, "-c", "pass"], 0).wall for _ in range(ROUNDS)]
    print_results(
        "cli",
        "typer floor",
        rows,
        {
            "rounds": ROUNDS,
            "target_seconds": TARGET_SECONDS,
            "python_c_pass_seconds": sorted(bare)[len(bare) // 2],
            "peers": {
                "marquee --help": "python -c 'import typer'",
                "import marquee_cli.launcher": "python -c 'import typer'",
                "other commands": "a one-command typer app with one option",
            },
        },
        load=load,
    )


if __name__ == "__main__":
    main()
