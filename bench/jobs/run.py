"""The job queue's throughput next to a plain SKIP LOCKED loop, on one PostgreSQL.

Marquee: `JobQueue.enqueue` and a `Worker` (claim, run a no-op handler, record
the outcome, i.e. two statements per job). Peer: the textbook loop on a bare
table: INSERT to enqueue; a transaction that picks one row FOR UPDATE SKIP
LOCKED and marks it done. Both at 1, 4 and 16 concurrent enqueuers/workers,
against their own PostgreSQL started here (fsync on, as in production).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import Row, measure_calls, print_results
from marquee_jobs import MIGRATIONS, Job, JobQueue, Kind, Worker
from marquee_localservers import PostgresServer
from marquee_migrations import Migrator

SECONDS = float(os.environ.get("BENCH_SECONDS", "1"))
JOBS = int(os.environ.get("BENCH_JOBS", "2000"))
# Both sides are fsync-bound and share the machine: alternating them for a few
# rounds and keeping the median keeps a burst of outside load from deciding a ratio.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LEVELS = (1, 4, 16)
PLAIN_TABLE = """CREATE TABLE plain_jobs (
    id bigserial PRIMARY KEY, kind text NOT NULL, payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'queued')"""
PLAIN_INSERT = "INSERT INTO plain_jobs (kind, payload) VALUES ($1, $2::jsonb)"
PLAIN_TAKE = """UPDATE plain_jobs SET state = 'done' WHERE id = (
    SELECT id FROM plain_jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id"""
COUNT_SUCCEEDED = "SELECT count(*) FROM marquee_jobs WHERE state = 'succeeded'"


async def reset(pool: asyncpg.Pool) -> None:
    await pool.execute("TRUNCATE marquee_jobs, plain_jobs")


async def enqueue_rates(pool: asyncpg.Pool, concurrency: int) -> tuple[float, float]:
    queue = JobQueue(pool)
    marquee = await measure_calls(
        lambda: queue.enqueue("noop", {"n": 1}, queue="bench"),
        concurrency=concurrency,
        seconds=SECONDS,
    )
    plain = await measure_calls(
        lambda: pool.execute(PLAIN_INSERT, "noop", '{"n": 1}'),
        concurrency=concurrency,
        seconds=SECONDS,
    )
    return marquee.per_second, plain.per_second


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


async def marquee_completion_rate(pool: asyncpg.Pool, concurrency: int) -> float:
    async def noop(job: Job) -> None:
        return None

    worker = Worker(pool, [Kind("noop", noop)], {"bench": concurrency}, poll_interval=0.01)
    began = time.perf_counter()
    task = asyncio.create_task(worker.run())
    try:
        while await pool.fetchval(COUNT_SUCCEEDED) < JOBS:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - began
    finally:
        task.cancel()
        await asyncio.wait([task])
    return JOBS / elapsed


async def plain_completion_rate(pool: asyncpg.Pool, concurrency: int) -> float:
    async def loop() -> None:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(PLAIN_TAKE) is None:
                    return

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return JOBS / (time.perf_counter() - began)


def medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(m for m, _ in pairs), statistics.median(p for _, p in pairs)


async def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="marquee-bench-pg-", ignore_cleanup_errors=True) as d,
        PostgresServer(Path(d)) as server,
    ):
        await Migrator(server.url, MIGRATIONS).up()
        async with asyncpg.create_pool(server.url, min_size=4, max_size=max(LEVELS) + 4) as pool:
            await pool.execute(PLAIN_TABLE)
            rows: list[Row] = []
            for concurrency in LEVELS:
                enqueued, completed = [], []
                for _ in range(ROUNDS):
                    await reset(pool)
                    enqueued.append(await enqueue_rates(pool, concurrency))
                    await fill(pool)
                    m_done = await marquee_completion_rate(pool, concurrency)
                    p_done = await plain_completion_rate(pool, concurrency)
                    completed.append((m_done, p_done))
                rows.append(Row(f"enqueue/s @{concurrency}", *medians(enqueued), "jobs/s"))
                rows.append(
                    Row(f"completed/s @{concurrency} workers", *medians(completed), "jobs/s")
                )
    print_results("jobs", "plain SKIP LOCKED loop", rows)


if __name__ == "__main__":
    uvloop.run(main())
