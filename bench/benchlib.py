"""The benchmark convention: a readable table, then one JSON line of figures.

Every bench under bench/ measures Marquee next to a peer in the same run and
ends with `print_results`, so `make bench` output can be tracked over time by
reading the last line of each bench. Each figure keeps the values of its runs:
the table shows the median and the spread (min-max) of both sides and of their
ratio, the load average seen during the bench, and the command that reproduces it.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Row:
    figure: str
    marquee: float
    peer: float
    unit: str
    # The per-run values behind `marquee` and `peer` (their medians), if any.
    marquee_runs: tuple[float, ...] = ()
    peer_runs: tuple[float, ...] = ()
    # Paired: run i of both sides was taken back to back, so their ratio is
    # meaningful per run and the ratio shown is the median of those ratios (load
    # from elsewhere moves both sides of a pair alike).
    paired: bool = False
    # How each side is measured, when the figure's name does not say it.
    recipe: str = ""

    @property
    def ratio_runs(self) -> tuple[float, ...]:
        if not self.paired:
            return ()
        return tuple(_ratio(m, p) for m, p in zip(self.marquee_runs, self.peer_runs, strict=True))

    @property
    def ratio(self) -> float:
        if self.ratio_runs:
            return statistics.median(self.ratio_runs)
        return _ratio(self.marquee, self.peer)


def _ratio(marquee: float, peer: float) -> float:
    return marquee / peer if peer else float("nan")


def from_runs(
    figure: str,
    marquee_runs: Sequence[float],
    peer_runs: Sequence[float],
    unit: str,
    *,
    paired: bool = True,
    recipe: str = "",
) -> Row:
    """A row of medians over runs; `paired` if run i of each side ran back to back."""
    return Row(
        figure,
        statistics.median(marquee_runs),
        statistics.median(peer_runs),
        unit,
        tuple(marquee_runs),
        tuple(peer_runs),
        paired=paired and len(marquee_runs) == len(peer_runs),
        recipe=recipe,
    )


def spread(values: Sequence[float]) -> str:
    """min-max of the runs, or "" for a single value."""
    if len(values) < 2:
        return ""
    return f"{_fmt(min(values))}-{_fmt(max(values))}"


def _fmt(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


@dataclass
class LoadLog:
    """The 1-minute load average, sampled at each round: figures on a shared
    machine are only readable next to it."""

    samples: list[float] = field(default_factory=list)

    def sample(self) -> float:
        load = os.getloadavg()[0]
        self.samples.append(load)
        return load

    def summary(self) -> dict[str, float]:
        if not self.samples:
            self.sample()
        return {
            "min": min(self.samples),
            "median": statistics.median(self.samples),
            "max": max(self.samples),
        }


def reproduce_command() -> str:
    """The command line that reran this bench, with the BENCH_* settings it had."""
    settings = [
        f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")
    ]
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(Path.cwd()):
        script = script.relative_to(Path.cwd())
    return " ".join([*settings, ".venv/bin/python", str(script), *sys.argv[1:]])


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
    calls: int = 0


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
        calls=len(latencies),
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
    bench: str,
    peer: str,
    rows: Sequence[Row],
    notes: Mapping[str, object] | None = None,
    *,
    load: LoadLog | None = None,
) -> None:
    """`notes` go into the JSON line beside the figures, with the load and the command.

    Each side shows its median and, in brackets, the spread (min-max) over its runs;
    the ratio is the median of per-run ratios where the runs were paired.
    """
    width = max(len(r.figure) for r in rows)
    print(
        f"{'figure':<{width}}  {'marquee':>10} {'[spread]':>17}  {peer:>10} {'[spread]':>17}"
        f"  {'ratio':>6} {'[spread]':>13}  {'n':>3}  unit"
    )
    for r in rows:
        runs = max(len(r.marquee_runs), len(r.peer_runs), 1)
        print(
            f"{r.figure:<{width}}  {_fmt(r.marquee):>10} {spread(r.marquee_runs):>17}"
            f"  {_fmt(r.peer):>10} {spread(r.peer_runs):>17}"
            f"  {_fmt(r.ratio):>6} {spread(r.ratio_runs):>13}  {runs:>3}  {r.unit}"
        )
    recipes = [r for r in rows if r.recipe]
    if recipes:
        print("recipes:")
        for r in recipes:
            print(f"  {r.figure}: {r.recipe}")
    figures: dict[str, dict[str, object]] = {}
    for r in rows:
        entry: dict[str, object] = {
            "marquee": r.marquee,
            "peer": r.peer,
            "ratio": r.ratio,
            "unit": r.unit,
        }
        if r.marquee_runs or r.peer_runs:
            entry["marquee_runs"] = list(r.marquee_runs)
            entry["peer_runs"] = list(r.peer_runs)
        if r.ratio_runs:
            entry["ratio_runs"] = list(r.ratio_runs)
        if r.recipe:
            entry["recipe"] = r.recipe
        figures[r.figure] = entry
    record: dict[str, object] = {"bench": bench, "peer": peer, "figures": figures}
    all_notes = dict(notes or {})
    if load is not None:
        all_notes["load_1min"] = load.summary()
    all_notes["command"] = reproduce_command()
    record["notes"] = all_notes
    print(f"load average (1 min) during the bench: {_load_text(load)}")
    print(f"reproduce: {all_notes['command']}")
    print(json.dumps(record, sort_keys=True))


def _load_text(load: LoadLog | None) -> str:
    if load is None:
        return f"{os.getloadavg()[0]:.2f} at the end"
    s = load.summary()
    return f"median {s['median']:.2f}, min {s['min']:.2f}, max {s['max']:.2f}"
