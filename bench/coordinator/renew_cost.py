"""Where a unary renewal's CPU goes: Marquee's leader next to the no-op floor.

`run.py` compares calls/s. On this 2-core machine the client and the servers
share the cores, so calls/s follows the CPU a call costs all processes
together. This measures that cost per call, per side of the wire: the bench
process (the gRPC client), the Marquee node processes (the leader and its two
followers) and the floor's process (coordinator_bench_floor.py). Unary Renew
only, BENCH_CONCURRENCY in flight, the two sides alternating round by round.

Run: `.venv/bin/python bench/coordinator/renew_cost.py` (BENCH_ROUNDS 6,
BENCH_SECONDS 4, BENCH_CONCURRENCY 64).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.coordinator_bench_cluster import MarqueeCluster
from coordinator.coordinator_bench_floor import FloorServer
from coordinator.coordinator_bench_measure import (
    SafetyLog,
    ThroughputSubject,
    acquire_throughput,
    renew_throughput,
    time_to_first_write,
)

from benchlib import LoadLog, reproduce_command

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))


def cpu_seconds(processes: Sequence[psutil.Process]) -> list[float]:
    """User plus system CPU of each process so far (0 for one that is gone)."""
    seconds = []
    for process in processes:
        try:
            times = process.cpu_times()
            seconds.append(times.user + times.system)
        except psutil.Error:
            seconds.append(0.0)
    return seconds


def with_children(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


async def main() -> None:
    load = LoadLog()
    load.sample()
    me = psutil.Process()
    rows: dict[str, list[dict[str, float]]] = {"marquee": [], "floor": []}
    async with MarqueeCluster("default") as marquee, FloorServer() as floor:
        await time_to_first_write(marquee)
        await marquee.use_leader()
        servers: dict[str, list[psutil.Process]] = {
            "marquee": [
                p
                for node in marquee.nodes.values()
                if node.process is not None
                for p in with_children(node.process.pid)
            ],
            "floor": with_children(floor.pid),
        }
        logs = {"marquee": SafetyLog(), "floor": SafetyLog()}
        subjects: tuple[ThroughputSubject, ThroughputSubject] = (marquee, floor)
        for subject in subjects:
            log = logs[subject.label]
            await acquire_throughput(
                subject, concurrency=CONCURRENCY, seconds=1, log=log, run=subject.label
            )
        for round_ in range(ROUNDS):
            load.sample()
            for subject in subjects if round_ % 2 == 0 else subjects[::-1]:
                label = subject.label
                client_before = sum(cpu_seconds([me]))
                server_before = cpu_seconds(servers[label])
                result = await renew_throughput(
                    subject,
                    logs[label].granted,
                    concurrency=CONCURRENCY,
                    seconds=SECONDS,
                    log=logs[label],
                )
                calls = result.per_second * SECONDS
                server_after = cpu_seconds(servers[label])
                server = [
                    (after - before) / calls * 1e6
                    for before, after in zip(server_before, server_after, strict=True)
                ]
                rows[label].append(
                    {
                        "calls_per_s": result.per_second,
                        "client_us": (sum(cpu_seconds([me])) - client_before) / calls * 1e6,
                        "server_us": sum(server),
                        "busiest_server_process_us": max(server),
                    }
                )
                print(f"round {round_ + 1} {label}: {json.dumps(rows[label][-1])}", flush=True)
    load.sample()

    def median(label: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[label])

    print(f"\nunary Renew @{CONCURRENCY}, medians of {ROUNDS} rounds of {SECONDS:g} s")
    print(f"{'':8} {'calls/s':>8} {'client µs':>10} {'servers µs':>11} {'busiest µs':>11}")
    for label in rows:
        print(
            f"{label:8} {median(label, 'calls_per_s'):8.0f} {median(label, 'client_us'):10.1f} "
            f"{median(label, 'server_us'):11.1f} {median(label, 'busiest_server_process_us'):11.1f}"
        )
    ratios = [
        m["calls_per_s"] / f["calls_per_s"]
        for m, f in zip(rows["marquee"], rows["floor"], strict=True)
    ]
    print(
        f"calls/s Marquee / floor per round: median {statistics.median(ratios):.2f} "
        f"[{min(ratios):.2f}-{max(ratios):.2f}]"
    )
    loads = load.summary()
    print(f"load average (1 min): {loads['min']:.2f}-{loads['max']:.2f}")
    print(f"reproduce: {reproduce_command()}")


if __name__ == "__main__":
    uvloop.run(main())
