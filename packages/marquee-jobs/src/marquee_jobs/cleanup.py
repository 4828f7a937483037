"""The queue's own housekeeping, as a lease-gated periodic job.

It requeues claims abandoned by dead workers, deletes finished jobs past their
retention and unique keys past their window. Schedule it with
`PeriodicRunner(leases, [cleanup_job(pool)])`; the lease keeps it to one runner.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from marquee_jobs.db import Connection
from marquee_jobs.fencing import fenced_write
from marquee_jobs.leases import Lease
from marquee_jobs.periodic import PeriodicJob

NAME = "cleanup"
DAY = 86400.0

REQUEUE_ABANDONED = """UPDATE marquee_jobs
SET state = 'queued', locked_until = NULL, last_error = 'claim abandoned (worker stopped answering)'
WHERE state = 'running' AND locked_until < now()"""
# Bounded per run so one transaction never grows with the backlog; the next run goes on.
DELETE_FINISHED = """DELETE FROM marquee_jobs WHERE id IN (
    SELECT id FROM marquee_jobs
    WHERE state IN ('succeeded', 'failed') AND finished_at < now() - make_interval(secs => $1)
    LIMIT $2)"""
DELETE_EXPIRED_KEYS = "DELETE FROM marquee_job_keys WHERE expires_at <= now()"


@dataclass(frozen=True)
class CleanupReport:
    requeued: int
    deleted_jobs: int
    deleted_keys: int


async def clean_queue(conn: Connection, *, retention: float, batch: int = 10_000) -> CleanupReport:
    """One pass over the queue tables (run it inside a transaction with fenced_write)."""
    return CleanupReport(
        requeued=_count(await conn.execute(REQUEUE_ABANDONED)),
        deleted_jobs=_count(await conn.execute(DELETE_FINISHED, retention, batch)),
        deleted_keys=_count(await conn.execute(DELETE_EXPIRED_KEYS)),
    )


def cleanup_job(
    pool: asyncpg.Pool, *, retention: float = 7 * DAY, interval: float = 60.0
) -> PeriodicJob:
    """The `cleanup` periodic job: keep finished jobs for `retention` seconds."""

    async def work(lease: Lease) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await fenced_write(conn, f"jobs/{NAME}", lease.token)
            await clean_queue(conn, retention=retention)

    return PeriodicJob(name=NAME, work=work, interval=interval)


def _count(status: str) -> int:
    # asyncpg returns the command tag, e.g. "DELETE 12" or "UPDATE 3".
    return int(status.rsplit(" ", 1)[-1])
