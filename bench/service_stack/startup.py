"""Spawn to SERVING for each service process, one at a time (issue 15, item 3).

Each service is started as `make run` starts it (`python -m marquee_<service>`,
JSON logs to a pipe, the suite's settings with one private Redis and
PostgreSQL), alone on the machine, and timed from the spawn to

- bound: its gRPC port accepts a TCP connection;
- SERVING: grpc.health.v1 Check of the whole server ("") answers SERVING;

with the CPU seconds the process had used by then (from /proc). Then it is
stopped with SIGTERM. A first start of every service (migrations, the search
demo catalogue) is not counted; then BENCH_ROUNDS rounds, in a rotating order.

`.venv/bin/python bench/service_stack/startup.py` — settings: `BENCH_ROUNDS`
(5), `BENCH_SERVICES` (comma-separated names, default all five), and
`BENCH_BASELINE_PYTHONPATH`: a PYTHONPATH holding another version of the
packages and services (e.g. each `src` directory of `git archive <commit>`),
started as the peer right before or after each start of this tree (the order
alternates), so that both see the same machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, reproduce_command, spread
from marquee_localservers import PostgresServer, RedisServer, free_port
from marquee_localservers.spawning import child_argv

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
BASELINE_PATH = os.environ.get("BENCH_BASELINE_PYTHONPATH", "")
SERVICES = ("cache-gateway", "auth", "media", "search", "coordinator")
POLL_S = 0.005
TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Start:
    bound_s: float
    serving_s: float
    cpu_s: float


def service_env(name: str, tmp: Path, redis_url: str, postgres_url: str) -> dict[str, str]:
    """The suite's settings for one service alone (marquee_cli.suite, without peers)."""
    prefix = {"cache-gateway": "CACHE"}.get(name, name.upper())
    port = free_port()
    settings: dict[str, str] = {
        "GRPC_PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "PROFILE": "dev",
    }
    match name:
        case "cache-gateway":
            settings["REDIS_URL"] = redis_url
        case "auth":
            settings |= {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url}
        case "media":
            settings |= {"STORAGE_DIR": str(tmp / "media"), "DATABASE_URL": postgres_url}
        case "search":
            settings |= {
                "DATA_DIR": str(tmp / "search"),
                "DATABASE_URL": postgres_url,
                "DEMO_CATALOGUE": "true",
            }
        case "coordinator":
            settings |= {
                "RAFT_ADDRESS": f"127.0.0.1:{free_port()}",
                "DATA_DIR": str(tmp / "coordinator"),
            }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env |= {f"MARQUEE_{prefix}_{k}": v for k, v in settings.items()}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def module(name: str) -> str:
    return "marquee_" + name.replace("-", "_")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.05)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def start_once(name: str, env: dict[str, str], log: Path) -> Start:
    port = int(env[f"MARQUEE_{'CACHE' if name == 'cache-gateway' else name.upper()}_GRPC_PORT"])
    with log.open("ab") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(
            child_argv([sys.executable, "-m", module(name)]),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = began + TIMEOUT_S
        while not accepts(port):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{name} did not bind its port (see {log})")
            await asyncio.sleep(POLL_S)
        bound = time.perf_counter() - began
        # Reconnects after a refused connect would otherwise back off for a second.
        options = [("grpc.initial_reconnect_backoff_ms", 5), ("grpc.max_reconnect_backoff_ms", 20)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            while True:
                try:
                    reply = await stub.Check(request, timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{name} did not report SERVING (see {log})")
                await asyncio.sleep(POLL_S)
        serving = time.perf_counter() - began
        return Start(bound, serving, cpu_seconds(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def main() -> None:
    chosen = [s for s in os.environ.get("BENCH_SERVICES", ",".join(SERVICES)).split(",") if s]
    load = LoadLog()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = RedisServer(tmp / "redis", persistent=False)
        postgres = PostgresServer(tmp / "postgres")
        redis_server.start()
        postgres.start()
        try:
            envs = {n: service_env(n, tmp, redis_server.url, postgres.url) for n in chosen}
            sides: dict[str, dict[str, str]] = {"this tree": {}}
            if BASELINE_PATH:
                sides["baseline"] = {"PYTHONPATH": BASELINE_PATH}
            for name in chosen:  # first starts: migrations, the demo catalogue
                for extra in sides.values():
                    await start_once(name, envs[name] | extra, tmp / f"{name}.log")
            starts: dict[tuple[str, str], list[Start]] = {
                (name, side): [] for name in chosen for side in sides
            }
            for round_ in range(ROUNDS):
                load.sample()
                order = chosen[round_ % len(chosen) :] + chosen[: round_ % len(chosen)]
                for name in order:
                    pairs = list(sides.items())
                    for side, extra in pairs if round_ % 2 == 0 else reversed(pairs):
                        env = envs[name] | extra
                        starts[name, side].append(await start_once(name, env, tmp / f"{name}.log"))
        finally:
            postgres.stop()
            redis_server.stop()
    load.sample()
    header = f"{'spawn->SERVING s':>17} [spread]     {'bound s':>8} {'CPU s':>6}"
    print(f"{'service':15} {'side':10} {header}")
    for (name, side), runs in starts.items():
        serving = [s.serving_s for s in runs]
        print(
            f"{name:15} {side:10} {statistics.median(serving):17.2f} [{spread(serving)}]"
            f" {statistics.median(s.bound_s for s in runs):8.2f}"
            f" {statistics.median(s.cpu_s for s in runs):6.2f}"
        )
    summary = load.summary()
    print(
        f"load average (1 min): median {summary['median']:.2f},"
        f" min {summary['min']:.2f}, max {summary['max']:.2f}; {ROUNDS} rounds"
    )
    print(f"reproduce: {reproduce_command()}")


if __name__ == "__main__":
    uvloop.run(main())
