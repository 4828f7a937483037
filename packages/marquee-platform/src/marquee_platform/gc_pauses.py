"""marquee_gc_pause_seconds: how long each garbage collection stopped the process.

A collection holds the GIL from start to end, so every thread of the service
(the event loop, the coordinator's Raft tick) waits it out. prometheus_client's
own GC collector counts collections but not their length, and the length is
what eats into a deadline (docs/coordinator-timing.md, "Garbage collection").
Kept by hand from `gc.callbacks`, which Python calls at the start and the end
of every collection.
"""

from __future__ import annotations

import gc
import itertools
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# Young collections take microseconds; a full one over a large heap, tens of ms.
BOUNDS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_LE = (*(floatToGoString(b) for b in BOUNDS), "+Inf")  # type: ignore[no-untyped-call]
GENERATIONS = 3


class GcPauses(Collector):
    """Per generation: a histogram of collection lengths, as plain numbers.

    No lock: Python runs one collection at a time, callbacks included, and a
    collection can start inside any allocation, a scrape's too, so a lock
    taken by both could be taken twice by one thread. A scrape that reads
    mid-update sees one collection's count without its seconds, or the reverse.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        # Not cumulative: slot i counts the pauses in (bound i-1, bound i]; the last, the rest.
        self.buckets = [[0] * (len(BOUNDS) + 1) for _ in range(GENERATIONS)]
        self.seconds = [0.0] * GENERATIONS
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        pause = self._clock() - self._started
        generation = info["generation"]
        self.buckets[generation][bisect_left(BOUNDS, pause)] += 1
        self.seconds[generation] += pause

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "marquee_gc_pause_seconds",
            "Length of each garbage collection, which holds the GIL throughout, by generation.",
            labels=["generation"],
        )
        for generation in range(GENERATIONS):
            buckets = list(itertools.accumulate(self.buckets[generation]))
            family.add_metric(
                [str(generation)],
                list(zip(_LE, buckets, strict=True)),
                self.seconds[generation],
            )
        yield family


GC_PAUSES = GcPauses()
_installed = False


def record_gc_pauses() -> None:
    """Time every collection of this process from now on (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    prometheus_client.REGISTRY.register(GC_PAUSES)
    gc.callbacks.append(GC_PAUSES.callback)
