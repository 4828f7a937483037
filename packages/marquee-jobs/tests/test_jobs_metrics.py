"""Queue depth from one collector, exported once as gauges (P-2)."""

from __future__ import annotations

import asyncpg
from jobs_helpers import eventually, running
from prometheus_client import REGISTRY, generate_latest

from marquee_jobs import Job, JobQueue, Kind, Worker


async def test_queue_depth_is_one_gauge_family_by_queue_and_state(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    for _ in range(3):
        await queue.enqueue("idle", queue="depth", delay=600)

    async def never(job: Job) -> None:
        raise AssertionError("scheduled for later")

    worker = Worker(pool, [Kind("idle", never)], {"depth": 1}, depth_interval=0.05)
    async with running(worker.run()):

        async def reported() -> bool:
            value = REGISTRY.get_sample_value(
                "marquee_jobs_queue_depth", {"queue": "depth", "state": "queued"}
            )
            return value == 3

        await eventually(reported)
    text = generate_latest(REGISTRY).decode()
    assert text.count("# TYPE marquee_jobs_queue_depth gauge") == 1
    assert 'marquee_jobs_queue_depth{queue="depth",state="running"} 0.0' in text
    for counter in ("outcomes", "retries", "lease_held", "lease_lost", "periodic_runs"):
        assert f"# TYPE marquee_jobs_{counter}_total counter" in text or (
            f"# TYPE marquee_jobs_{counter} counter" in text
        )
