"""The cost of the platform's server stack on a no-op unary RPC.

Marquee: a service started by `python -m marquee_search` (span, metrics and
error mapping around every handler), called on grpc.health.v1 Check. Peer: a bare
grpc.aio server with the same health servicer and no interceptors. Both run
as their own process; the client is this process, on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import Row, measure_calls, print_results, wait_serving
from marquee_localservers import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


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
    marquee_port, peer_port = free_port(), free_port()
    env = {
        **os.environ,
        "MARQUEE_SEARCH_GRPC_PORT": str(marquee_port),
        "MARQUEE_SEARCH_METRICS_PORT": "-1",
        "MARQUEE_SEARCH_LOG_LEVEL": "WARNING",
    }
    here = Path(__file__).resolve().parent
    procs = [
        subprocess.Popen([sys.executable, "-m", "marquee_search"], env=env),
        subprocess.Popen([sys.executable, str(here / "plain_server.py"), str(peer_port)]),
    ]
    try:
        marquee, peer = f"127.0.0.1:{marquee_port}", f"127.0.0.1:{peer_port}"
        await asyncio.gather(wait_serving(marquee), wait_serving(peer))
        rows: list[Row] = []
        for concurrency in (1, 64):
            # Alternate the two servers over several rounds and keep medians, so a
            # burst of load from elsewhere on the machine hits both alike.
            m_runs, p_runs = [], []
            for _ in range(ROUNDS):
                m_runs.append(await measure(marquee, concurrency))
                p_runs.append(await measure(peer, concurrency))
            m_rate, m_p99 = (statistics.median(x) for x in zip(*m_runs, strict=True))
            p_rate, p_p99 = (statistics.median(x) for x in zip(*p_runs, strict=True))
            rows.append(Row(f"no-op unary calls/s @{concurrency}", m_rate, p_rate, "calls/s"))
            rows.append(Row(f"no-op unary p99 @{concurrency}", m_p99, p_p99, "ms"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
    print_results("service_stack", "bare grpc.aio", rows)


if __name__ == "__main__":
    uvloop.run(main())
