"""The job queue's throughput next to a plain SKIP LOCKED loop, on one PostgreSQL.

Marquee: `JobQueue.enqueue` (with its NOTIFY) and a `Worker` (one statement
writes the outcomes finished since the last claim and claims as many jobs as
there are free slots; a no-op handler). Peer: the textbook loop on a bare
table: INSERT to enqueue; a transaction that picks one row FOR UPDATE SKIP
LOCKED and marks it done. Both at 1, 4 and 16 concurrent enqueuers/workers,
against their own PostgreSQL started here (fsync on, as in production).

Enqueue-to-start latency: one idle worker (concurrency 1), an enqueue at a
random moment, and the time from the enqueue's commit being acknowledged to
the handler being entered. Marquee wakes on the queue's NOTIFY; the plain loop
polls, every 0.5 s (Marquee's own `poll_interval` default, its fallback), and
"entered" is the moment its take returns the row.

Like with like: the peer's table gets the same kind of partial index on ready
rows that marquee_jobs has (without it every take walks all finished rows, and
draining is quadratic), both sides stamp `finished_at` on each job, and a drain
is timed on the database's clock from just before the workers start to the
last `finished_at`. So neither the wait for the last job to be noticed nor a
poll is in either figure. Connections are all opened before any timing, and
each round alternates which side goes first.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import LoadLog, Row, from_runs, measure_calls, percentile, print_results
from marquee_jobs import MIGRATIONS, Job, JobQueue, Kind, Worker
from marquee_localservers import PostgresServer
from marquee_migrations import Migrator

SECONDS = float(os.environ.get("BENCH_SECONDS", "1"))
JOBS = int(os.environ.get("BENCH_JOBS", "2000"))
# Both sides are fsync-bound and share the machine: alternating them over rounds
# and keeping the median keeps a burst of outside load from deciding a ratio.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
LEVELS = (1, 4, 16)
LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "40"))
# Marquee's default poll_interval; the plain loop polls at the same rate.
POLL = 0.5
PLAIN_TABLE = """CREATE TABLE plain_jobs (
    id bigserial PRIMARY KEY, kind text NOT NULL, payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'queued', finished_at timestamptz)"""
# The same kind of index marquee_jobs_ready is: only ready rows, in take order.
PLAIN_INDEX = "CREATE INDEX plain_jobs_ready ON plain_jobs (id) WHERE state = 'queued'"
PLAIN_INSERT = "INSERT INTO plain_jobs (kind, payload) VALUES ($1, $2::jsonb)"
# clock_timestamp(): the moment of the update, as Marquee's autocommit SUCCEED's
# now() is (here now() would be the earlier BEGIN's).
PLAIN_TAKE = """UPDATE plain_jobs SET state = 'done', finished_at = clock_timestamp() WHERE id = (
    SELECT id FROM plain_jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id"""
COUNT_SUCCEEDED = "SELECT count(*) FROM marquee_jobs WHERE state = 'succeeded'"
LAST_FINISHED = {
    "marquee": "SELECT max(finished_at) FROM marquee_jobs",
    "plain": "SELECT max(finished_at) FROM plain_jobs",
}


async def reset(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE marquee_jobs, plain_jobs")


async def enqueue_rate(pool: asyncpg.Pool, side: str, concurrency: int) -> float:
    if side == "marquee":
        queue = JobQueue(pool)
        result = await measure_calls(
            lambda: queue.enqueue("noop", {"n": 1}, queue="bench"),
            concurrency=concurrency,
            seconds=SECONDS,
        )
    else:
        result = await measure_calls(
            lambda: pool.execute(PLAIN_INSERT, "noop", '{"n": 1}'),
            concurrency=concurrency,
            seconds=SECONDS,
        )
    return result.per_second


async def fill(pool: asyncpg.Pool) -> None:
    await reset(pool)
    await pool.execute(
        "INSERT INTO marquee_jobs (queue, kind, payload) "
        "SELECT 'bench', 'noop', '{}' FROM generate_series(1, $1)",
        JOBS,
    )
    await pool.execute(
        "INSERT INTO plain_jobs (kind, payload) SELECT 'noop', '{}' FROM generate_series(1, $1)",
        JOBS,
    )
    # Fresh statistics for both, so autovacuum's timing does not pick a plan for one.
    await pool.execute("ANALYZE marquee_jobs, plain_jobs")


async def database_now(pool: asyncpg.Pool) -> datetime:
    now: datetime = await pool.fetchval("SELECT clock_timestamp()")
    return now


async def drain_seconds(pool: asyncpg.Pool, side: str, began: datetime) -> float:
    """From `began` to the side's last finished_at, both on the database's clock."""
    last: datetime = await pool.fetchval(LAST_FINISHED[side])
    return (last - began).total_seconds()


async def marquee_completion_rate(pool: asyncpg.Pool, concurrency: int) -> float:
    handled = 0
    all_handled = asyncio.Event()

    async def noop(job: Job) -> None:
        # Counting here, not polling count(*) during the drain: no extra queries
        # compete with the worker's while it is timed.
        nonlocal handled
        handled += 1
        if handled >= JOBS:
            all_handled.set()

    worker = Worker(pool, [Kind("noop", noop)], {"bench": concurrency}, poll_interval=0.01)
    began = await database_now(pool)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(all_handled.wait(), timeout=600)
        # The last outcomes are being recorded: a few polls, after the timed work.
        while await pool.fetchval(COUNT_SUCCEEDED) < JOBS:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.wait([task])
    return JOBS / await drain_seconds(pool, "marquee", began)


async def plain_completion_rate(pool: asyncpg.Pool, concurrency: int) -> float:
    async def loop() -> None:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(PLAIN_TAKE) is None:
                    return

    began = await database_now(pool)
    await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(concurrency))), timeout=600)
    return JOBS / await drain_seconds(pool, "plain", began)


async def idle_gap() -> None:
    # A random moment within a poll period: the plain loop's wait depends on where
    # in its sleep the job lands, and a fixed gap would pick one phase for it.
    await asyncio.sleep(random.uniform(0.02, 0.02 + POLL))


async def marquee_start_latency(pool: asyncpg.Pool) -> list[float]:
    entered: asyncio.Queue[float] = asyncio.Queue()

    async def record(job: Job) -> None:
        entered.put_nowait(time.perf_counter())

    worker = Worker(pool, [Kind("latency", record)], {"latency": 1}, poll_interval=POLL)
    queue = JobQueue(pool)
    task = asyncio.create_task(worker.run())
    samples: list[float] = []
    try:
        while worker.listener_pid is None:  # set-up, before anything is timed
            await asyncio.sleep(0.01)
        for _ in range(LATENCY_SAMPLES):
            await idle_gap()
            await queue.enqueue("latency", queue="latency")
            committed = time.perf_counter()
            samples.append(await asyncio.wait_for(entered.get(), 60) - committed)
    finally:
        task.cancel()
        await asyncio.wait([task])
    return samples


async def plain_start_latency(pool: asyncpg.Pool) -> list[float]:
    entered: asyncio.Queue[float] = asyncio.Queue()

    async def loop() -> None:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                taken = await conn.fetchval(PLAIN_TAKE)
                if taken is not None:
                    # The textbook loop runs the job here, inside its transaction.
                    entered.put_nowait(time.perf_counter())
            if taken is None:
                await asyncio.sleep(POLL)

    task = asyncio.create_task(loop())
    samples: list[float] = []
    try:
        for _ in range(LATENCY_SAMPLES):
            await idle_gap()
            await pool.execute(PLAIN_INSERT, "latency", "{}")
            committed = time.perf_counter()
            samples.append(await asyncio.wait_for(entered.get(), 60) - committed)
    finally:
        task.cancel()
        await asyncio.wait([task])
    return samples


async def latency_rows(pool: asyncpg.Pool, load: LoadLog) -> list[Row]:
    p50: dict[str, list[float]] = {"marquee": [], "plain": []}
    p99: dict[str, list[float]] = {"marquee": [], "plain": []}
    for round_ in range(ROUNDS):
        load.sample()
        order = ("marquee", "plain") if round_ % 2 == 0 else ("plain", "marquee")
        await reset(pool)
        for side in order:
            if side == "marquee":
                samples = await marquee_start_latency(pool)
            else:
                samples = await plain_start_latency(pool)
            p50[side].append(1000 * percentile(samples, 0.5))
            p99[side].append(1000 * percentile(samples, 0.99))
        print(
            f"  latency round {round_ + 1} ({order[0]} first): p50 {p50['marquee'][-1]:.1f} vs "
            f"{p50['plain'][-1]:.1f} ms, p99 {p99['marquee'][-1]:.1f} vs "
            f"{p99['plain'][-1]:.1f} ms",
            flush=True,
        )
    recipe = (
        f"idle worker, {LATENCY_SAMPLES} enqueues per round; lower is better; the plain "
        f"loop polls every {POLL:g} s"
    )
    return [
        from_runs("enqueue-to-start p50", p50["marquee"], p50["plain"], "ms", recipe=recipe),
        from_runs("enqueue-to-start p99", p99["marquee"], p99["plain"], "ms", recipe=recipe),
    ]


async def main() -> None:
    load = LoadLog()
    with (
        tempfile.TemporaryDirectory(prefix="marquee-bench-pg-", ignore_cleanup_errors=True) as d,
        PostgresServer(Path(d)) as server,
    ):
        await Migrator(server.url, MIGRATIONS).up()
        # Every connection opened up front (min = max): whichever side first needs
        # 16 connections would otherwise pay for opening them inside its timing.
        size = max(LEVELS) + 4
        async with asyncpg.create_pool(server.url, min_size=size, max_size=size) as pool:
            await pool.execute(PLAIN_TABLE)
            await pool.execute(PLAIN_INDEX)
            rows: list[Row] = []
            for concurrency in LEVELS:
                enqueued: dict[str, list[float]] = {"marquee": [], "plain": []}
                completed: dict[str, list[float]] = {"marquee": [], "plain": []}
                for round_ in range(ROUNDS):
                    load.sample()
                    order = ("marquee", "plain") if round_ % 2 == 0 else ("plain", "marquee")
                    await reset(pool)
                    for side in order:
                        enqueued[side].append(await enqueue_rate(pool, side, concurrency))
                    await fill(pool)
                    for side in order:
                        if side == "marquee":
                            rate = await marquee_completion_rate(pool, concurrency)
                        else:
                            rate = await plain_completion_rate(pool, concurrency)
                        completed[side].append(rate)
                    print(
                        f"  @{concurrency} round {round_ + 1} ({order[0]} first): enqueue "
                        f"{enqueued['marquee'][-1]:,.0f} vs {enqueued['plain'][-1]:,.0f}/s, "
                        f"completed {completed['marquee'][-1]:,.0f} vs "
                        f"{completed['plain'][-1]:,.0f}/s",
                        flush=True,
                    )
                rows.append(
                    from_runs(
                        f"enqueue/s @{concurrency}", enqueued["marquee"], enqueued["plain"],
                        "jobs/s",
                    )
                )  # fmt: skip
                rows.append(
                    from_runs(
                        f"completed/s @{concurrency} workers", completed["marquee"],
                        completed["plain"], "jobs/s",
                    )
                )  # fmt: skip
            rows += await latency_rows(pool, load)
    load.sample()
    notes = {
        "rounds": ROUNDS,
        "jobs": JOBS,
        "seconds": SECONDS,
        "latency_samples": LATENCY_SAMPLES,
    }
    print_results("jobs", "plain SKIP LOCKED loop", rows, notes, load=load)


if __name__ == "__main__":
    uvloop.run(main())
