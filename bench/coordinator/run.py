"""Marquee's coordinator next to etcd: elections, failover, handover, lease throughput, safety.

Both run as 3 real node processes on loopback, in one run, with their default
(production) timing: Marquee `python -m marquee_coordinator` (RAFT_TIMING=default,
heartbeat 100 ms, election timeout 0.4-1.0 s), etcd 3.4 from Debian's
`etcd-server` (heartbeat 100 ms, election timeout 1 s). Measurements alternate
between the two, so a burst of load from elsewhere on the machine hits both.

Marquee is called through its raw generated stubs, so its figures are the
server's; etcd through aetcd, a thin asyncio client over etcd's own stubs.
The client is this one Python process (on uvloop) for both.

Env: BENCH_SECONDS (per throughput figure, 3), BENCH_FAILOVER_RUNS (10),
BENCH_HANDOVER_RUNS (5), BENCH_COORDINATOR_TIMING (default|fast),
BENCH_MAX_LOAD (1.5) and BENCH_LOAD_WAITS (6 waits of 20 s for a quieter machine).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.coordinator_bench_cluster import MarqueeCluster
from coordinator.coordinator_bench_etcd import EtcdCluster
from coordinator.coordinator_bench_measure import (
    SafetyLog,
    Subject,
    acquire_throughput,
    failover_after_kill,
    handover_on_sigterm,
    handover_on_transfer,
    handover_on_transfer_busy,
    nearest_rank,
    renew_throughput,
    time_to_first_write,
    wait_for_quiet_machine,
)

from benchlib import Row, Throughput, print_results

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
FAILOVER_RUNS = int(os.environ.get("BENCH_FAILOVER_RUNS", "10"))
HANDOVER_RUNS = int(os.environ.get("BENCH_HANDOVER_RUNS", "5"))
TIMING = os.environ.get("BENCH_COORDINATOR_TIMING", "default")
MAX_LOAD = float(os.environ.get("BENCH_MAX_LOAD", "1.5"))
LOAD_WAITS = int(os.environ.get("BENCH_LOAD_WAITS", "6"))

# Issue 3's targets for Marquee.
FAILOVER_TARGET_S = 1.0
HANDOVER_TARGET_MS = 50.0
ACQUIRE_TARGET_PER_S = 1000.0

Samples = dict[str, list[float]]


async def alternate(
    subjects: tuple[Subject, Subject], measure: Callable[[Subject], Awaitable[float]], runs: int
) -> Samples:
    samples: Samples = {s.label: [] for s in subjects}
    for run in range(runs):
        for subject in subjects:
            value = await measure(subject)
            samples[subject.label].append(value)
            print(f"  {measure.__name__} #{run + 1} {subject.label}: {value:.3f} s", flush=True)
    return samples


async def throughput(
    subjects: tuple[Subject, Subject], logs: dict[str, SafetyLog]
) -> dict[str, dict[str, Throughput]]:
    """Acquire then Renew at 1 and 64 clients, alternating systems; keyed by figure."""
    results: dict[str, dict[str, Throughput]] = {}
    for concurrency in (1, 64):
        for subject in subjects:
            log = logs[subject.label]
            await subject.use_leader()
            run = f"{subject.label}-c{concurrency}"
            got_before = len(log.granted)
            acquired = await acquire_throughput(
                subject, concurrency=concurrency, seconds=SECONDS, log=log, run=run
            )
            renewed = await renew_throughput(
                subject,
                log.granted[got_before:],
                concurrency=concurrency,
                seconds=SECONDS,
                log=log,
            )
            results.setdefault(f"Acquire @{concurrency}", {})[subject.label] = acquired
            results.setdefault(f"Renew @{concurrency}", {})[subject.label] = renewed
            print(
                f"  {subject.label} @{concurrency}: acquire {acquired.per_second:,.0f}/s, "
                f"renew {renewed.per_second:,.0f}/s",
                flush=True,
            )
    return results


def verdict(name: str, value: float, target: float, *, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    if met:
        return f"{name}: {value:,.3g} (target {target:,.3g}) met"
    if target == 0 or value == 0:
        return f"{name}: {value:,.3g} (target {target:,.3g}) MISSED"
    off = value / target if at_most else target / value
    return f"{name}: {value:,.3g} (target {target:,.3g}) MISSED by {off:.1f}x"


async def main() -> None:
    load_before = await wait_for_quiet_machine(threshold=MAX_LOAD, tries=LOAD_WAITS, pause=20)
    print(f"load average before: {load_before:.2f}", flush=True)
    logs = {"marquee": SafetyLog(), "etcd": SafetyLog()}
    async with MarqueeCluster(TIMING) as marquee, EtcdCluster() as etcd:
        subjects: tuple[Subject, Subject] = (marquee, etcd)
        # Started one after the other so neither start competes with the other.
        first = {s.label: await time_to_first_write(s) for s in subjects}
        print(f"  first write: {first}", flush=True)
        transfer = await alternate(subjects, handover_on_transfer, HANDOVER_RUNS)
        busy = await alternate(subjects, handover_on_transfer_busy, HANDOVER_RUNS)
        sigterm = await alternate(subjects, handover_on_sigterm, HANDOVER_RUNS)
        failover = await alternate(subjects, failover_after_kill, FAILOVER_RUNS)
        rates = await throughput(subjects, logs)
    load_after = os.getloadavg()[0]

    def median(samples: Samples, label: str) -> float:
        return statistics.median(samples[label])

    def failed(samples: Samples, label: str) -> float:
        # A failed transfer call is recorded as an infinite handover.
        return float(sum(math.isinf(x) for x in samples[label]))

    rows = [
        Row("first leader: spawn to 1st write", first["marquee"], first["etcd"], "s"),
        Row("failover kill -9 p50", median(failover, "marquee"), median(failover, "etcd"), "s"),
        Row(
            "failover kill -9 p90",
            nearest_rank(failover["marquee"], 0.9),
            nearest_rank(failover["etcd"], 0.9),
            "s",
        ),
        Row(
            "handover transfer call p50",
            median(transfer, "marquee") * 1000,
            median(transfer, "etcd") * 1000,
            "ms",
        ),
        Row(
            "handover transfer, busy writer p50",
            median(busy, "marquee") * 1000,
            median(busy, "etcd") * 1000,
            "ms",
        ),
        Row(
            "transfers failed, busy writer", failed(busy, "marquee"), failed(busy, "etcd"), "count"
        ),
        Row(
            "handover SIGTERM p50",
            median(sigterm, "marquee") * 1000,
            median(sigterm, "etcd") * 1000,
            "ms",
        ),
    ]
    for figure, by_label in rates.items():
        m, e = by_label["marquee"], by_label["etcd"]
        rows.append(Row(f"{figure} calls/s", m.per_second, e.per_second, "calls/s"))
        rows.append(Row(f"{figure} p99", m.p99_ms, e.p99_ms, "ms"))
    violations = {label: float(log.violations) for label, log in logs.items()}
    rows.append(Row("safety violations", violations["marquee"], violations["etcd"], "count"))

    checks = [
        verdict("failover p50 (s)", median(failover, "marquee"), FAILOVER_TARGET_S, at_most=True),
        verdict(
            "planned handover p50, transfer call (ms)",
            median(transfer, "marquee") * 1000,
            HANDOVER_TARGET_MS,
            at_most=True,
        ),
        verdict(
            "planned handover p50, SIGTERM (ms)",
            median(sigterm, "marquee") * 1000,
            HANDOVER_TARGET_MS,
            at_most=True,
        ),
        verdict(
            "Acquire @64 (calls/s)",
            rates["Acquire @64"]["marquee"].per_second,
            ACQUIRE_TARGET_PER_S,
            at_most=False,
        ),
        verdict("safety violations", violations["marquee"], 0, at_most=True),
        verdict("transfers failed under one busy writer", failed(busy, "marquee"), 0, at_most=True),
    ]
    print("\nMarquee against issue 3's targets:")
    for line in checks:
        print(f"  {line}")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after\n")
    notes = {
        "load_before": load_before,
        "load_after": load_after,
        "marquee_timing": TIMING,
        "failover_runs": FAILOVER_RUNS,
        "handover_runs": HANDOVER_RUNS,
        "seconds": SECONDS,
        "marquee_client": "raw stubs",
        "targets": checks,
    }
    print_results("coordinator", "etcd 3.4", rows, notes)


if __name__ == "__main__":
    uvloop.run(main())
