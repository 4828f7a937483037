"""Garbage-collection pauses of a coordinator holding many leases, next to the no-op floor.

A full collection holds the GIL while it walks every tracked object, so it
stops the event loop and the Raft tick thread together; with a large lease
table that pause grows with the table (docs/coordinator-timing.md, "Garbage
collection"). This grants BENCH_LEASES leases (default 20,000) on a
single-node coordinator (`python -m marquee_coordinator`: it leads at once,
and renews by the same leader-local path as a leader of three) and on the
floor (coordinator_bench_floor.py, which keeps nothing), then renews them
round-robin from 64 tasks for BENCH_SECONDS per round (default 20),
alternating the two sides for BENCH_ROUNDS rounds (default 5). Each server's
`marquee_gc_pause_seconds` histogram, scraped around each round, gives its
full (generation 2) collections and the time all collections took.

`.venv/bin/python bench/coordinator/gc_pauses.py`. About 5 minutes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvloop
from google.protobuf.duration_pb2 import Duration
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, Row, from_runs, print_results, reproduce_command, wait_serving
from marquee.coordinator.v1 import lease_pb2, lease_pb2_grpc
from marquee_localservers import free_port
from marquee_localservers.spawning import child_argv

HERE = Path(__file__).resolve().parent
LEASES = int(os.environ.get("BENCH_LEASES", "20000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
TASKS = 64
# Long enough that every lease is renewed well within it at this machine's rate.
TTL_SECONDS = 600
CALL_TIMEOUT = 30


@dataclass(frozen=True)
class GcTotals:
    """Cumulative figures of one scrape."""

    full_count: float
    full_seconds: float
    all_seconds: float
    # Cumulative count of full collections at or under each bound, by bound.
    full_buckets: dict[float, float]


def gc_totals(text: str) -> GcTotals:
    count = seconds = every = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "marquee_gc_pause_seconds":
            continue
        for sample in family.samples:
            full = sample.labels["generation"] == "2"
            if sample.name.endswith("_sum"):
                every += sample.value
                seconds += sample.value if full else 0.0
            elif sample.name.endswith("_count") and full:
                count = sample.value
            elif sample.name.endswith("_bucket") and full:
                buckets[float(sample.labels["le"])] = sample.value
    return GcTotals(count, seconds, every, buckets)


def longest_bound(before: GcTotals, after: GcTotals) -> float:
    """The smallest histogram bound that all full collections between two scrapes were under."""
    added = after.full_count - before.full_count
    for bound in sorted(after.full_buckets):
        if after.full_buckets[bound] - before.full_buckets.get(bound, 0.0) >= added:
            return bound
    return float("inf")


@dataclass
class Side:
    label: str
    metrics_url: str
    grants: list[lease_pb2.RenewRequest]

    def scrape(self) -> GcTotals:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return gc_totals(response.read().decode())


@contextmanager
def spawned(label: str, argv: list[str], env: dict[str, str], tmp: Path) -> Iterator[None]:
    with (tmp / f"{label}.log").open("ab") as log:
        process = subprocess.Popen(
            child_argv(argv), env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def granted(channel: grpc.aio.Channel) -> list[lease_pb2.RenewRequest]:
    stub = lease_pb2_grpc.LeaseServiceStub(channel)
    names = iter(range(LEASES))
    requests: list[lease_pb2.RenewRequest] = []

    async def grant() -> None:
        for n in names:
            reply = await stub.Acquire(
                lease_pb2.AcquireRequest(
                    name=f"bench/gc-{n}", holder_id=f"holder-{n}", ttl=Duration(seconds=TTL_SECONDS)
                ),
                timeout=CALL_TIMEOUT,
            )
            if not reply.acquired:
                raise RuntimeError(f"not granted: {reply}")
            requests.append(
                lease_pb2.RenewRequest(
                    name=reply.lease.name, holder_id=reply.lease.holder_id, token=reply.lease.token
                )
            )

    await asyncio.gather(*(grant() for _ in range(TASKS)))
    return requests


async def renew_for(side: Side, channel: grpc.aio.Channel, seconds: float) -> float:
    """Renew side's leases round-robin from TASKS tasks for `seconds`; renewals a second."""
    stub = lease_pb2_grpc.LeaseServiceStub(channel)
    end = time.monotonic() + seconds
    done = 0

    async def task(first: int) -> None:
        nonlocal done
        while time.monotonic() < end:
            for request in side.grants[first::TASKS]:
                reply = await stub.Renew(request, timeout=CALL_TIMEOUT)
                if not reply.renewed:
                    raise RuntimeError(f"not renewed: {reply}")
                done += 1
                if time.monotonic() >= end:
                    return

    start = time.monotonic()
    await asyncio.gather(*(task(k) for k in range(TASKS)))
    return done / (time.monotonic() - start)


@dataclass
class RoundFigures:
    renewals_per_second: float
    full_per_minute: float
    full_mean_ms: float
    full_longest_under_ms: float
    gc_share_percent: float


async def one_round(side: Side, channel: grpc.aio.Channel) -> RoundFigures:
    before, start = side.scrape(), time.monotonic()
    rate = await renew_for(side, channel, SECONDS)
    after, wall = side.scrape(), time.monotonic() - start
    full = after.full_count - before.full_count
    return RoundFigures(
        rate,
        full / wall * 60,
        (after.full_seconds - before.full_seconds) / full * 1000 if full else 0.0,
        longest_bound(before, after) * 1000 if full else 0.0,
        (after.all_seconds - before.all_seconds) / wall * 100,
    )


async def main() -> None:
    load = LoadLog()
    with tempfile.TemporaryDirectory(prefix="bench-coordinator-gc-") as tmp_name:
        tmp = Path(tmp_name)
        ports = {name: (free_port(), free_port()) for name in ("marquee", "floor")}
        marquee_env = {
            "MARQUEE_COORDINATOR_NODE_ID": "1",
            "MARQUEE_COORDINATOR_RAFT_ADDRESS": f"127.0.0.1:{free_port()}",
            "MARQUEE_COORDINATOR_PEERS": "",
            "MARQUEE_COORDINATOR_DATA_DIR": str(tmp / "marquee"),
            "MARQUEE_COORDINATOR_CLUSTER_SECRET": "bench-gc-pauses-cluster-secret",
            "MARQUEE_COORDINATOR_PROFILE": "prod",
            "MARQUEE_COORDINATOR_GRPC_PORT": str(ports["marquee"][0]),
            "MARQUEE_COORDINATOR_METRICS_PORT": str(ports["marquee"][1]),
            "MARQUEE_COORDINATOR_LOG_LEVEL": "WARNING",
        }
        floor_env = {
            "MARQUEE_FLOOR_GRPC_PORT": str(ports["floor"][0]),
            "MARQUEE_FLOOR_METRICS_PORT": str(ports["floor"][1]),
            "MARQUEE_FLOOR_LOG_LEVEL": "WARNING",
            "MARQUEE_FLOOR_PROFILE": "prod",
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path]),
        }
        floor_argv = [sys.executable, str(HERE / "coordinator_bench_floor.py")]
        with (
            spawned("marquee", [sys.executable, "-m", "marquee_coordinator"], marquee_env, tmp),
            spawned("floor", floor_argv, floor_env, tmp),
        ):
            sides, channels = [], []
            for label in ("marquee", "floor"):
                grpc_port, metrics_port = ports[label]
                address = f"127.0.0.1:{grpc_port}"
                await wait_serving(address, timeout=120)
                channel = grpc.aio.insecure_channel(address)
                channels.append(channel)
                sides.append(
                    Side(
                        label,
                        f"http://127.0.0.1:{metrics_port}/metrics",
                        await granted(channel),
                    )
                )
            figures: dict[str, list[RoundFigures]] = {"marquee": [], "floor": []}
            try:
                for r in range(ROUNDS):
                    load.sample()
                    order = (0, 1) if r % 2 == 0 else (1, 0)
                    for i in order:
                        figures[sides[i].label].append(await one_round(sides[i], channels[i]))
            finally:
                for channel in channels:
                    await channel.close()
    ours, floor = figures["marquee"], figures["floor"]

    def row(figure: str, field: str, unit: str, recipe: str = "") -> Row:
        return from_runs(
            figure,
            [getattr(f, field) for f in ours],
            [getattr(f, field) for f in floor],
            unit,
            recipe=recipe,
        )

    rows = [
        row(
            "renewals/s",
            "renewals_per_second",
            "/s (unary Renew @64)",
            f"{LEASES:,} leases renewed round-robin by {TASKS} tasks, {SECONDS:g} s a round",
        ),
        row("full collections", "full_per_minute", "per minute"),
        row("full collection, mean", "full_mean_ms", "ms (0: none in the round)"),
        row("full collection, longest under", "full_longest_under_ms", "ms (histogram bound)"),
        row("all collections", "gc_share_percent", "% of wall time"),
    ]
    print_results(
        "coordinator_gc_pauses",
        "no-op floor",
        rows,
        {"leases": LEASES, "seconds": SECONDS, "rounds": ROUNDS, "command": reproduce_command()},
        load=load,
    )


if __name__ == "__main__":
    uvloop.run(main())
