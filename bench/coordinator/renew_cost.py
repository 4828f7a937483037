"""Where a renewal's CPU goes: Marquee's leader next to the no-op floor and etcd.

`run.py` compares calls/s. On this 2-core machine the client and the servers
share the cores, so calls/s follows the CPU a call costs all processes
together. This measures that cost per call, per side of the wire: the bench
process (the gRPC client), the Marquee node processes (the leader and its two
followers), the floor's process (coordinator_bench_floor.py) and etcd's three
members, at the same heartbeat and election timeout as run.py's default
timing. BENCH_CONCURRENCY in flight, the three sides rotating round by round.

BENCH_RECIPE picks the recipe, as in run.py: `unary` (Marquee's unary Renew;
etcd's single-shot keep-alive, a fresh LeaseKeepAlive stream per renewal) or
`stream` (one long-lived renewal stream per client on both sides).

Run: `.venv/bin/python bench/coordinator/renew_cost.py` (BENCH_ROUNDS 6,
BENCH_SECONDS 4, BENCH_CONCURRENCY 64, BENCH_RECIPE unary).
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
from coordinator.coordinator_bench_etcd import EtcdCluster
from coordinator.coordinator_bench_floor import FloorServer
from coordinator.coordinator_bench_measure import (
    SafetyLog,
    ThroughputSubject,
    acquire_throughput,
    renew_stream_throughput,
    renew_throughput,
    time_to_first_write,
)

from benchlib import LoadLog, reproduce_command

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
RECIPE = os.environ.get("BENCH_RECIPE", "unary")
RENEWALS = {"unary": renew_throughput, "stream": renew_stream_throughput}[RECIPE]


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
    rows: dict[str, list[dict[str, float]]] = {"marquee": [], "floor": [], "etcd": []}
    async with (
        MarqueeCluster("default") as marquee,
        FloorServer() as floor,
        # run.py's default timing: 100 ms heartbeats, etcd's 500 ms election timeout.
        EtcdCluster(heartbeat_ms=100, election_ms=500) as etcd,
    ):
        for cluster in (marquee, etcd):
            await time_to_first_write(cluster)
            await cluster.use_leader()
        servers: dict[str, list[psutil.Process]] = {
            "marquee": [
                p
                for node in marquee.nodes.values()
                if node.process is not None
                for p in with_children(node.process.pid)
            ],
            "floor": with_children(floor.pid),
            "etcd": [psutil.Process(process.pid) for process in etcd.processes.values()],
        }
        logs = {label: SafetyLog() for label in rows}
        subjects: tuple[ThroughputSubject, ...] = (marquee, floor, etcd)
        for subject in subjects:
            log = logs[subject.label]
            await acquire_throughput(
                subject, concurrency=CONCURRENCY, seconds=1, log=log, run=subject.label
            )
        for round_ in range(ROUNDS):
            load.sample()
            shift = round_ % len(subjects)
            for subject in subjects[shift:] + subjects[:shift]:
                label = subject.label
                client_before = sum(cpu_seconds([me]))
                server_before = cpu_seconds(servers[label])
                result = await RENEWALS(
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

    print(f"\n{RECIPE} renewals @{CONCURRENCY}, medians of {ROUNDS} rounds of {SECONDS:g} s")
    print(f"{'':8} {'calls/s':>8} {'client µs':>10} {'servers µs':>11} {'busiest µs':>11}")
    for label in rows:
        print(
            f"{label:8} {median(label, 'calls_per_s'):8.0f} {median(label, 'client_us'):10.1f} "
            f"{median(label, 'server_us'):11.1f} {median(label, 'busiest_server_process_us'):11.1f}"
        )
    for ours, theirs in (("marquee", "floor"), ("marquee", "etcd"), ("etcd", "floor")):
        ratios = [
            a["calls_per_s"] / b["calls_per_s"]
            for a, b in zip(rows[ours], rows[theirs], strict=True)
        ]
        print(
            f"calls/s {ours} / {theirs} per round: median {statistics.median(ratios):.2f} "
            f"[{min(ratios):.2f}-{max(ratios):.2f}]"
        )
    loads = load.summary()
    print(f"load average (1 min): {loads['min']:.2f}-{loads['max']:.2f}")
    print(f"reproduce: {reproduce_command()}")


if __name__ == "__main__":
    uvloop.run(main())
