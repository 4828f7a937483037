"""The benchmark convention: a readable table, then one JSON line of figures.

Every bench under bench/ measures Marquee next to a peer in the same run and
ends with `print_results`, so `make bench` output can be tracked over time by
reading the last line of each bench.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    figure: str
    marquee: float
    peer: float
    unit: str

    @property
    def ratio(self) -> float:
        return self.marquee / self.peer if self.peer else float("nan")


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True)
class Throughput:
    per_second: float
    p50_ms: float
    p99_ms: float
    max_gap_ms: float = 0.0
    """The longest time in which no call completed: a pause (GC, a stall) shows here."""


async def measure_calls(
    call: Callable[[], Awaitable[object]], *, concurrency: int, seconds: float
) -> Throughput:
    """Run `call` from `concurrency` tasks for about `seconds`; latency per call."""
    import asyncio

    latencies: list[float] = []
    completions: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await call()
            ended = time.perf_counter()
            latencies.append(ended - began)
            completions.append(ended)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return Throughput(
        per_second=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_gap_ms=max((b - a for a, b in itertools.pairwise(completions)), default=0.0) * 1000,
    )


async def wait_serving(address: str, service: str = "", timeout: float = 30.0) -> None:
    """Wait until grpc.health.v1 reports `service` ("" is the whole server) SERVING."""
    import asyncio

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        while True:
            try:
                reply = await stub.Check(request, timeout=5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


def print_results(
    bench: str, peer: str, rows: Sequence[Row], notes: Mapping[str, object] | None = None
) -> None:
    """`notes` (e.g. the load average) go into the JSON line beside the figures."""
    width = max(len(r.figure) for r in rows)
    print(f"{'figure':<{width}}  {'marquee':>12}  {peer:>12}  {'ratio':>7}  unit")
    for r in rows:
        print(
            f"{r.figure:<{width}}  {r.marquee:>12,.2f}  {r.peer:>12,.2f}  {r.ratio:>7.2f}  {r.unit}"
        )
    figures = {
        r.figure: {"marquee": r.marquee, "peer": r.peer, "ratio": r.ratio, "unit": r.unit}
        for r in rows
    }
    record: dict[str, object] = {"bench": bench, "peer": peer, "figures": figures}
    if notes:
        record["notes"] = dict(notes)
    print(json.dumps(record, sort_keys=True))
