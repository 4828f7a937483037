"""Workers against a real PostgreSQL: retries with backoff, timeouts, schedules, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import time

import asyncpg
from jobs_helpers import count_in_state, eventually, job_row, running, state_is
from prometheus_client import REGISTRY

from marquee_jobs import Backoff, Job, JobQueue, Kind, Worker

POLL = 0.02


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_failing_job_stops_at_max_attempts_with_backoff(pool: asyncpg.Pool) -> None:
    calls: list[float] = []

    async def always_fails(job: Job) -> None:
        calls.append(time.monotonic())
        raise RuntimeError(f"attempt {job.attempt} failed")

    kind = Kind("flaky", always_fails, max_attempts=3, backoff=Backoff(base=0.2, factor=2))
    retries_before = sample("marquee_jobs_retries_total", kind="flaky", reason="error")
    failed_before = sample("marquee_jobs_outcomes_total", kind="flaky", outcome="failed")
    job_id = await JobQueue(pool).enqueue("flaky")
    assert job_id is not None
    async with running(Worker(pool, [kind], poll_interval=POLL).run()):
        await eventually(lambda: state_is(pool, job_id, "failed"))
        await asyncio.sleep(0.3)  # a fourth attempt would come 0.8s after the third
    assert len(calls) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    row = await job_row(pool, job_id)
    assert (row["attempts"], row["last_error"]) == (3, "RuntimeError: attempt 3 failed")
    assert sample("marquee_jobs_retries_total", kind="flaky", reason="error") == retries_before + 2
    assert (
        sample("marquee_jobs_outcomes_total", kind="flaky", outcome="failed") == failed_before + 1
    )


async def test_a_job_past_its_timeout_is_cancelled(pool: asyncpg.Pool) -> None:
    cancelled = asyncio.Event()

    async def hangs(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    kind = Kind("hangs", hangs, max_attempts=1, timeout=0.2)
    job_id = await JobQueue(pool).enqueue("hangs")
    assert job_id is not None
    began = time.monotonic()
    async with running(Worker(pool, [kind], poll_interval=POLL).run()):
        await eventually(lambda: state_is(pool, job_id, "failed"))
    assert cancelled.is_set()
    assert time.monotonic() - began < 5
    assert (await job_row(pool, job_id))["last_error"] == "timed out after 0.2s"


async def test_a_scheduled_job_waits_for_its_time(pool: asyncpg.Pool) -> None:
    ran_at: list[float] = []

    async def record(job: Job) -> None:
        ran_at.append(time.monotonic())

    began = time.monotonic()
    job_id = await JobQueue(pool).enqueue("later", delay=1.0)
    assert job_id is not None
    async with running(Worker(pool, [Kind("later", record)], poll_interval=POLL).run()):
        await asyncio.sleep(0.6)
        assert ran_at == []
        await eventually(lambda: state_is(pool, job_id, "succeeded"))
    assert ran_at[0] - began >= 1.0


async def test_each_queue_runs_at_most_its_concurrency(pool: asyncpg.Pool) -> None:
    active = {"bulk": 0, "mail": 0}
    peak = {"bulk": 0, "mail": 0}

    async def busy(job: Job) -> None:
        active[job.queue] += 1
        peak[job.queue] = max(peak[job.queue], active[job.queue])
        await asyncio.sleep(0.1)
        active[job.queue] -= 1

    queue = JobQueue(pool)
    for _ in range(8):
        await queue.enqueue("busy", queue="bulk")
        await queue.enqueue("busy", queue="mail")
    worker = Worker(pool, [Kind("busy", busy)], {"bulk": 3, "mail": 1}, poll_interval=POLL)
    async with running(worker.run()):

        async def all_done() -> bool:
            return await count_in_state(pool, "succeeded") == 16

        await eventually(all_done)
    assert peak == {"bulk": 3, "mail": 1}


async def test_shutdown_cancels_and_awaits_every_task_and_hands_the_job_back(
    pool: asyncpg.Pool,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_job(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await JobQueue(pool).enqueue("long")
    assert job_id is not None
    before = asyncio.all_tasks()
    worker = Worker(pool, [Kind("long", long_job)], {"default": 4, "other": 2}, poll_interval=POLL)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    assert len(asyncio.all_tasks() - before) >= 4  # run, two queue loops, depth, the job
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert cancelled.is_set()
    assert asyncio.all_tasks() - before == set()  # J-3: nothing left behind
    row = await job_row(pool, job_id)
    # Shutdown is not the job's fault: back in the queue with the attempt not counted.
    assert (row["state"], row["attempts"]) == ("queued", 0)
