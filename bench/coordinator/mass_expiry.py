"""Renewals on the leader while many leases fall due at once (clients gone together).

One Marquee cluster (3 processes, `BENCH_COORDINATOR_TIMING`, default `fast`):
64 clients hold long leases and renew them flat out through unary Renew for
8 s, while `BENCH_EXPIRING` (12,000) other leases, granted just before with a
TTL of `BENCH_EXPIRING_TTL` (6 s), run out and are expired by the leader.
Prints the renewals per second and the slowest call of each second, and
whether the leader changed. No peer: it measures how much a mass expiry
costs the calls beside it.

    .venv/bin/python bench/coordinator/mass_expiry.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import grpc
import uvloop
from google.protobuf.duration_pb2 import Duration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.coordinator_bench_cluster import MarqueeCluster
from coordinator.coordinator_bench_measure import SafetyLog, acquire_throughput

from marquee.coordinator.v1 import lease_pb2

EXPIRING = int(os.environ.get("BENCH_EXPIRING", "12000"))
EXPIRING_TTL = int(os.environ.get("BENCH_EXPIRING_TTL", "6"))  # whole seconds
TIMING = os.environ.get("BENCH_COORDINATOR_TIMING", "fast")
CLIENTS = 64
SECONDS = 8.0


async def main() -> None:
    async with MarqueeCluster(timing=TIMING) as cluster:
        for node_id in cluster.node_ids:
            cluster.spawn(node_id)
        leader, term = await cluster.settled()
        stub = cluster.nodes[leader].stub()
        log = SafetyLog()
        await cluster.use_leader()
        await acquire_throughput(cluster, concurrency=CLIENTS, seconds=0.5, log=log, run="kept")
        kept = log.granted[:CLIENTS]

        slots = asyncio.Semaphore(CLIENTS)

        async def expiring(n: int) -> None:
            request = lease_pb2.AcquireRequest(
                name=f"expiring/{n}", holder_id="gone", ttl=Duration(seconds=EXPIRING_TTL)
            )
            async with slots:
                await stub.Acquire(request, timeout=10)

        began = time.monotonic()
        await asyncio.gather(*(expiring(n) for n in range(EXPIRING)))
        granted = time.monotonic()
        print(f"{EXPIRING} leases of {EXPIRING_TTL} s granted in {granted - began:.2f} s")

        calls: dict[int, list[float]] = {}
        errors: list[str] = []
        stop = granted + SECONDS

        async def renew(name: str, holder: str, token: int) -> None:
            request = lease_pb2.RenewRequest(name=name, holder_id=holder, token=token)
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    await stub.Renew(request, timeout=5)
                except grpc.aio.AioRpcError as error:
                    errors.append(f"{error.code().name}: {error.details()}")
                    await asyncio.sleep(0.05)
                    continue
                second = int(time.monotonic() - granted)
                calls.setdefault(second, []).append(time.perf_counter() - start)

        await asyncio.gather(*(renew(g.name, g.holder, g.token) for g in kept))
        print("second after the grants: renewals, slowest call (ms)")
        for second, latencies in sorted(calls.items()):
            if second < SECONDS:
                print(f"  {second}: {len(latencies):,}, {max(latencies) * 1000:.0f}")
        print(f"errors: {len(errors)} {errors[:3]}")
        now_leader, now_term = await cluster.settled()
        print(f"leader {leader} in term {term} -> {now_leader} in term {now_term}")


if __name__ == "__main__":
    uvloop.run(main())
