"""The cost of the platform's server stack on a no-op unary RPC.

Marquee: a service started by `python -m marquee_search` (span, metrics and
error mapping around every handler), called on grpc.health.v1 Check. Peer: a bare
grpc.aio server with the same health servicer and no interceptors. Both run
as their own process; the client is this process, on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, Row, from_runs, measure_calls, print_results, wait_serving
from marquee_localservers import free_port
from marquee_localservers.spawning import child_argv

SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


async def measure(address: str, concurrency: int) -> tuple[float, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        await measure_calls(lambda: stub.Check(request), concurrency=concurrency, seconds=0.5)
        result = await measure_calls(
            lambda: stub.Check(request), concurrency=concurrency, seconds=SECONDS
        )
        return result.per_second, result.p99_ms


async def main() -> None:
    load = LoadLog()
    marquee_port, peer_port = free_port(), free_port()
    env = {
        **os.environ,
        "MARQUEE_SEARCH_GRPC_PORT": str(marquee_port),
        "MARQUEE_SEARCH_METRICS_PORT": "-1",
        "MARQUEE_SEARCH_LOG_LEVEL": "WARNING",
    }
    here = Path(__file__).resolve().parent
    procs = [
        subprocess.Popen(child_argv([sys.executable, "-m", "marquee_search"]), env=env),
        subprocess.Popen(
            child_argv([sys.executable, str(here / "plain_server.py"), str(peer_port)])
        ),
    ]
    try:
        marquee, peer = f"127.0.0.1:{marquee_port}", f"127.0.0.1:{peer_port}"
        await asyncio.gather(wait_serving(marquee), wait_serving(peer))
        rows: list[Row] = []
        for concurrency in (1, 64):
            # The two servers back to back in each round, who goes first alternating,
            # medians over rounds: a burst of load from elsewhere hits both alike.
            m_runs, p_runs = [], []
            for round_ in range(ROUNDS):
                load.sample()
                if round_ % 2 == 0:
                    m_runs.append(await measure(marquee, concurrency))
                    p_runs.append(await measure(peer, concurrency))
                else:
                    p_runs.append(await measure(peer, concurrency))
                    m_runs.append(await measure(marquee, concurrency))
            rows.append(
                from_runs(f"no-op unary calls/s @{concurrency}", [r for r, _ in m_runs],
                          [r for r, _ in p_runs], "calls/s")
            )  # fmt: skip
            rows.append(
                from_runs(f"no-op unary p99 @{concurrency}", [p for _, p in m_runs],
                          [p for _, p in p_runs], "ms")
            )  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    load.sample()
    notes = {"rounds": ROUNDS, "seconds": SECONDS}
    print_results("service_stack", "bare grpc.aio", rows, notes, load=load)


if __name__ == "__main__":
    uvloop.run(main())
