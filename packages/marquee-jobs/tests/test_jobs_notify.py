"""LISTEN/NOTIFY wake-ups, batched claims and grouped outcomes against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
from jobs_helpers import count_in_state, eventually, job_row, running

from marquee_jobs import Job, JobQueue, Kind, Worker
from marquee_jobs.queue import NOTIFY_BACKLOG, channel_for

# Far longer than any bound below: a job that starts within the bound was woken
# by its notification, not found by a poll.
LONG_POLL = 120.0
# Generous for a loaded machine; a wake-up takes milliseconds.
STARTS_WITHIN = 20.0


async def listening(worker: Worker) -> int:
    async def ready() -> bool:
        return worker.listener_pid is not None

    await eventually(ready, timeout=STARTS_WITHIN)
    assert worker.listener_pid is not None
    return worker.listener_pid


async def test_a_job_enqueued_while_the_worker_is_idle_starts_before_the_poll_interval(
    pool: asyncpg.Pool,
) -> None:
    started = asyncio.Event()

    async def record(job: Job) -> None:
        started.set()

    worker = Worker(pool, [Kind("wake", record)], {"mail": 1}, poll_interval=LONG_POLL)
    async with running(worker.run()):
        await listening(worker)
        job_id = await JobQueue(pool).enqueue("wake", queue="mail")
        assert job_id is not None
        await asyncio.wait_for(started.wait(), STARTS_WITHIN)

        async def recorded() -> bool:
            return bool((await job_row(pool, job_id))["state"] == "succeeded")

        # The outcome goes out without waiting for a poll either.
        await eventually(recorded, timeout=STARTS_WITHIN)


async def test_jobs_still_run_with_the_listener_connection_killed(pool: asyncpg.Pool) -> None:
    ran: list[int] = []

    async def record(job: Job) -> None:
        ran.append(job.id)

    worker = Worker(pool, [Kind("poll", record)], poll_interval=0.05)
    queue = JobQueue(pool)
    async with running(worker.run()):
        pid = await listening(worker)
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        # Right after the kill nobody listens: polling finds the job.
        first = await queue.enqueue("poll")

        async def ran_first() -> bool:
            return first in ran

        await eventually(ran_first, timeout=STARTS_WITHIN)


async def test_a_lost_listener_reconnects_and_wakes_workers_again(pool: asyncpg.Pool) -> None:
    started = asyncio.Event()

    async def record(job: Job) -> None:
        started.set()

    worker = Worker(pool, [Kind("again", record)], poll_interval=LONG_POLL)
    async with running(worker.run()):
        pid = await listening(worker)
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)

        async def new_listener() -> bool:
            return worker.listener_pid not in (None, pid)

        await eventually(new_listener, timeout=STARTS_WITHIN)
        await JobQueue(pool).enqueue("again")
        await asyncio.wait_for(started.wait(), STARTS_WITHIN)


async def test_enqueue_notifies_its_queue_channel_on_commit_only(pool: asyncpg.Pool) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()

    def hear(_conn: object, _pid: int, channel: str, _payload: object) -> None:
        heard.put_nowait(channel)

    async with pool.acquire() as listener:
        await listener.add_listener(channel_for("reports"), hear)
        queue = JobQueue(pool)
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await queue.enqueue("report", queue="reports", conn=conn)
            await tx.rollback()
        # Nothing for a rolled-back enqueue; then one for a committed one.
        await queue.enqueue("report", queue="reports")
        assert await asyncio.wait_for(heard.get(), STARTS_WITHIN) == channel_for("reports")
        assert heard.empty()
        await listener.remove_listener(channel_for("reports"), hear)


async def test_no_notification_for_a_later_job_or_one_behind_a_backlog(pool: asyncpg.Pool) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()

    def hear(_conn: object, _pid: int, channel: str, _payload: object) -> None:
        heard.put_nowait(channel)

    queue = JobQueue(pool)
    async with pool.acquire() as listener:
        await listener.add_listener(channel_for("bulk"), hear)
        await queue.enqueue("later", queue="bulk", delay=3600)
        for _ in range(NOTIFY_BACKLOG):
            await queue.enqueue("bulk", queue="bulk")
        # The last one was the first with a full backlog ahead of it.
        await queue.enqueue("bulk", queue="bulk", unique_key="k", unique_for=60)
        await queue.enqueue("bulk", queue="bulk")
        # A round trip on the listening connection delivers what had arrived.
        await listener.execute("SELECT 1")
        await listener.remove_listener(channel_for("bulk"), hear)
    assert heard.qsize() == NOTIFY_BACKLOG


def test_long_queue_names_get_a_valid_channel() -> None:
    assert channel_for("default") == "marquee_jobs.default"
    long = channel_for("q" * 200)
    assert len(long.encode()) <= 63
    assert long != channel_for("q" * 201)


async def test_a_batch_is_claimed_at_once_and_stays_running_until_its_outcomes(
    pool: asyncpg.Pool,
) -> None:
    gate = asyncio.Event()
    entered: list[int] = []

    async def held(job: Job) -> None:
        entered.append(job.id)
        await gate.wait()

    queue = JobQueue(pool)
    for _ in range(5):
        await queue.enqueue("held")
    worker = Worker(pool, [Kind("held", held)], {"default": 5}, poll_interval=0.05)
    async with running(worker.run()):

        async def all_entered() -> bool:
            return len(entered) == 5

        await eventually(all_entered, timeout=STARTS_WITHIN)
        rows = await pool.fetch("SELECT state, locked_until FROM marquee_jobs")
        assert all(r["state"] == "running" and r["locked_until"] is not None for r in rows)
        gate.set()

        async def all_succeeded() -> bool:
            return await count_in_state(pool, "succeeded") == 5

        await eventually(all_succeeded, timeout=STARTS_WITHIN)
    rows = await pool.fetch("SELECT locked_until, finished_at, attempts FROM marquee_jobs")
    assert all(r["locked_until"] is None and r["finished_at"] is not None for r in rows)
    assert {r["attempts"] for r in rows} == {1}


async def test_outcomes_still_waiting_at_shutdown_are_written(pool: asyncpg.Pool) -> None:
    finished = asyncio.Event()

    async def quick(job: Job) -> None:
        finished.set()

    job_id = await JobQueue(pool).enqueue("quick")
    assert job_id is not None
    task = asyncio.create_task(Worker(pool, [Kind("quick", quick)], poll_interval=0.05).run())
    await asyncio.wait_for(finished.wait(), STARTS_WITHIN)
    task.cancel()
    await asyncio.wait([task])
    assert (await job_row(pool, job_id))["state"] == "succeeded"


async def test_a_worker_on_a_small_pool_neither_listens_nor_holds_connections(
    scratch_database_url: str, pool: asyncpg.Pool
) -> None:
    ran = asyncio.Event()

    async def record(job: Job) -> None:
        ran.set()

    await JobQueue(pool).enqueue("small")
    async with asyncpg.create_pool(scratch_database_url, min_size=1, max_size=2) as small:
        worker = Worker(small, [Kind("small", record)], poll_interval=0.05)
        # Two connections would leave handlers and enqueues nothing; it polls instead.
        assert not worker.listen
        async with running(worker.run()):
            await asyncio.wait_for(ran.wait(), STARTS_WITHIN)


async def test_claim_batch_caps_the_jobs_one_statement_claims(pool: asyncpg.Pool) -> None:
    gate = asyncio.Event()
    entered: list[int] = []

    async def held(job: Job) -> None:
        entered.append(job.id)
        await gate.wait()

    queue = JobQueue(pool)
    for _ in range(4):
        await queue.enqueue("capped")
    worker = Worker(pool, [Kind("capped", held)], {"default": 4}, claim_batch=1, poll_interval=0.05)
    async with running(worker.run()):

        async def all_entered() -> bool:
            return len(entered) == 4

        # Four claims of one job each fill the four slots.
        await eventually(all_entered, timeout=STARTS_WITHIN)
        gate.set()

        async def all_succeeded() -> bool:
            return await count_in_state(pool, "succeeded") == 4

        await eventually(all_succeeded, timeout=STARTS_WITHIN)
