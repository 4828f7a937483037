"""Failover alone, Marquee next to etcd 3.4, over enough kills for a steady median.

`run.py` measures kill -9 failover 10 times a side among everything else; its
median moves by tens of milliseconds from run to run, as much as the
differences being asked about. This runs only that measurement, alternating
the two clusters kill by kill with run.py's timing profiles, and prints per
side the p50, mean, p90, worst and the count over 1 s (a second election).

Run: `.venv/bin/python bench/coordinator/failover.py` (BENCH_FAILOVER_RUNS 60,
BENCH_COORDINATOR_TIMING default or fast).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.coordinator_bench_cluster import MarqueeCluster
from coordinator.coordinator_bench_etcd import EtcdCluster
from coordinator.coordinator_bench_measure import (
    failover_after_kill,
    nearest_rank,
    time_to_first_write,
)
from coordinator.run import TIMING, alternate

from benchlib import LoadLog, reproduce_command

RUNS = int(os.environ.get("BENCH_FAILOVER_RUNS", "60"))


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(samples),
        "mean": statistics.mean(samples),
        "p90": nearest_rank(samples, 0.9),
        "max": max(samples),
        "over_1s": sum(s > 1.0 for s in samples),
    }


async def main() -> None:
    load = LoadLog()
    load.sample()
    print(f"timing: {TIMING.description}; {RUNS} kills a side", flush=True)
    async with (
        MarqueeCluster(TIMING.marquee_profile) as marquee,
        EtcdCluster(heartbeat_ms=TIMING.heartbeat_ms, election_ms=TIMING.etcd_election_ms) as etcd,
    ):
        for subject in (marquee, etcd):
            await time_to_first_write(subject)
        samples = await alternate((marquee, etcd), failover_after_kill, RUNS)
    load.sample()
    figures = {label: summary(values) for label, values in samples.items()}
    print(f"{'':8} {'p50':>6} {'mean':>6} {'p90':>6} {'max':>6} {'>1 s':>5}")
    for label, f in figures.items():
        print(
            f"{label:8} {f['p50']:6.3f} {f['mean']:6.3f} {f['p90']:6.3f} {f['max']:6.3f} "
            f"{f['over_1s']:5.0f}"
        )
    ratio = figures["marquee"]["p50"] / figures["etcd"]["p50"]
    print(f"p50 ratio Marquee / etcd: {ratio:.2f}")
    loads = load.summary()
    print(f"load average (1 min), before and after: {loads['min']:.2f}-{loads['max']:.2f}")
    print(f"reproduce: {reproduce_command()}")
    print(json.dumps({"timing": TIMING.description, "figures": figures, "samples": samples}))


if __name__ == "__main__":
    uvloop.run(main())
