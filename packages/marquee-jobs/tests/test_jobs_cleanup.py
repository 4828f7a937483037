"""The `cleanup` periodic job: retention, abandoned claims, expired unique keys."""

from __future__ import annotations

import asyncpg
from jobs_helpers import count_in_state, eventually, job_row, running
from memory_leases import MemoryLeases

from marquee_jobs import JobQueue, PeriodicRunner, clean_queue, cleanup_job

FINISH = """UPDATE marquee_jobs SET state = $2, finished_at = now() - make_interval(secs => $3)
WHERE id = $1"""


async def enqueue(queue: JobQueue, kind: str = "k") -> int:
    job_id = await queue.enqueue(kind)
    assert job_id is not None
    return job_id


async def test_retention_deletes_only_finished_jobs_older_than_it(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    old_ok, old_failed, recent, waiting = [await enqueue(queue) for _ in range(4)]
    await pool.execute(FINISH, old_ok, "succeeded", 7200.0)
    await pool.execute(FINISH, old_failed, "failed", 7200.0)
    await pool.execute(FINISH, recent, "succeeded", 60.0)
    async with pool.acquire() as conn:
        report = await clean_queue(conn, retention=3600)
    assert report.deleted_jobs == 2
    left = {r["id"] for r in await pool.fetch("SELECT id FROM marquee_jobs")}
    assert left == {recent, waiting}


async def test_an_abandoned_claim_is_requeued_and_expired_keys_removed(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    stuck = await enqueue(queue)
    await pool.execute(
        "UPDATE marquee_jobs SET state = 'running', attempts = 1,"
        " locked_until = now() - interval '1 second' WHERE id = $1",
        stuck,
    )
    await queue.enqueue("k", unique_key="gone", unique_for=0.001)
    await queue.enqueue("k", unique_key="kept", unique_for=600)
    async with pool.acquire() as conn:
        report = await clean_queue(conn, retention=3600)
    assert (report.requeued, report.deleted_keys) == (1, 1)
    row = await job_row(pool, stuck)
    assert (row["state"], row["attempts"]) == ("queued", 1)


async def test_the_cleanup_job_runs_under_its_lease(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    done = await enqueue(queue)
    await pool.execute(FINISH, done, "succeeded", 10.0)
    leases = MemoryLeases()
    job = cleanup_job(pool, retention=1, interval=0.05)
    async with running(PeriodicRunner(leases, [job], retry_interval=0.05).run()):

        async def deleted() -> bool:
            return await count_in_state(pool, "succeeded") == 0

        await eventually(deleted)
        assert "jobs/cleanup" in leases.holders
    assert (
        await pool.fetchval("SELECT token FROM marquee_fencing WHERE resource = 'jobs/cleanup'")
        == 1
    )
