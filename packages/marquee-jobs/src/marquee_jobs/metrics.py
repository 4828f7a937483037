"""Prometheus metrics of the job library, defined once at import on the default registry.

Queue depth is a level, read from the database, so it is a gauge family served by
one collector from the last snapshot a worker took (collect() runs on the metrics
HTTP thread and cannot query asyncpg). Everything that only grows is a Counter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

STATES = ("queued", "running", "succeeded", "failed")


class QueueDepthCollector(Collector):
    """`marquee_jobs_queue_depth{queue, state}` from the latest snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: dict[tuple[str, str], int] = {}

    def update(self, counts: Mapping[tuple[str, str], int], queues: Iterable[str]) -> None:
        """Replace the snapshot for `queues`; a state with no rows is reported as 0."""
        with self._lock:
            for queue in queues:
                for state in STATES:
                    self._depth[(queue, state)] = counts.get((queue, state), 0)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "marquee_jobs_queue_depth",
            "Jobs in the queue table by state.",
            labels=["queue", "state"],
        )
        with self._lock:
            for (queue, state), count in sorted(self._depth.items()):
                family.add_metric([queue, state], count)
        yield family


QUEUE_DEPTH = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTH)

JOB_OUTCOMES = Counter(
    "marquee_jobs_outcomes",
    "Jobs finished for good, by kind and outcome (succeeded, failed).",
    ["kind", "outcome"],
)
JOB_RETRIES = Counter(
    "marquee_jobs_retries",
    "Failed job attempts scheduled again, by kind and reason (error, timeout).",
    ["kind", "reason"],
)
LEASE_HELD = Counter("marquee_jobs_lease_held", "Leases a periodic job runner acquired.", ["lease"])
LEASE_LOST = Counter(
    "marquee_jobs_lease_lost", "Leases lost while a periodic job runner held them.", ["lease"]
)
PERIODIC_RUNS = Counter(
    "marquee_jobs_periodic_runs",
    "Runs of lease-gated periodic jobs by outcome.",
    ["job", "outcome"],
)
