"""Elections while the log is compacted: a 3-node cluster acquiring until it holds many leases.

Every `compaction_min_entries` log entries each member writes its whole state
to its full dump (docs/coordinator-timing.md, "Compaction off the heartbeat
thread"). This acquires leases at 64 in flight, in rounds of BENCH_SECONDS,
until BENCH_LEASES are held (60 s TTL, renewed by nobody: the bench ends
first), and prints after each round the calls/s and the leader's Raft term.
A term that moves is an election nobody asked for; before the dump was
written off the tick thread, the compaction at ~75,000 leases set off four.

Run: `.venv/bin/python bench/coordinator/compaction.py` (BENCH_LEASES 90000,
BENCH_SECONDS 4, BENCH_COORDINATOR_TIMING default).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.coordinator_bench_cluster import MarqueeCluster
from coordinator.coordinator_bench_measure import SafetyLog, acquire_throughput

LEASES = int(os.environ.get("BENCH_LEASES", "90000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
TIMING = os.environ.get("BENCH_COORDINATOR_TIMING", "default")


async def main() -> None:
    async with MarqueeCluster(TIMING) as cluster:
        for node_id in cluster.node_ids:
            cluster.spawn(node_id)
        leader, first_term = await cluster.settled()
        print(f"leader {leader}, term {first_term}", flush=True)
        held, round_, failed = 0, 0, 0
        while held < LEASES:
            await cluster.use_leader()
            log = SafetyLog()
            try:
                result = await acquire_throughput(
                    cluster, concurrency=64, seconds=SECONDS, log=log, run=f"c{round_}"
                )
                rate = f"{result.per_second:,.0f}/s"
            except Exception as error:  # a leader lost mid-round: counted, and on we go
                failed += 1
                rate = f"failed: {type(error).__name__}"
            held += len(log.granted)
            leader, term = await cluster.settled()
            print(f"round {round_}: {rate}, {held:,} leases, leader {leader}, term {term}")
            round_ += 1
        dumps = sorted(cluster.data_dir.glob("node-*/raft.dump"))
        sizes = ", ".join(f"{d.stat().st_size / 1e6:.1f} MB" for d in dumps) or "none"
        print(
            f"elections after the first: {term - first_term}; rounds failed: {failed}; "
            f"full dumps written: {sizes}; timing {TIMING}"
        )


if __name__ == "__main__":
    uvloop.run(main())
