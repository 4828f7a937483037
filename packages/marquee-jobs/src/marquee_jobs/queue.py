"""Enqueueing: plain, scheduled, or unique within a window."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import asyncpg

from marquee_jobs.db import Connection

CHANNEL_PREFIX = "marquee_jobs."
# A channel name longer than NAMEDATALEN - 1 bytes is an error in PostgreSQL.
CHANNEL_MAX_BYTES = 63


def channel_for(queue: str) -> str:
    """The LISTEN/NOTIFY channel of a queue: enqueuers notify it, idle workers listen."""
    channel = CHANNEL_PREFIX + queue
    if len(channel.encode()) <= CHANNEL_MAX_BYTES:
        return channel
    return CHANNEL_PREFIX + hashlib.sha256(queue.encode()).hexdigest()[:40]


# pg_notify in the enqueue's own statement: the notification is delivered when
# (and only if) the transaction commits, in one round trip. Jobs scheduled for
# later send none; workers find those by polling. Nor does a job enqueued behind
# a backlog of NOTIFY_BACKLOG ready jobs: PostgreSQL serialises the commits of
# notifying transactions (one lock held through each commit's WAL flush), which
# cut concurrent enqueues to a fraction, and with that many jobs waiting the
# workers are busy, not idle; each comes back for more as a slot frees.
NOTIFY_BACKLOG = 64

INSERT_JOB = """WITH job AS (
    INSERT INTO marquee_jobs (queue, kind, payload, run_at)
    VALUES ($1, $2, $3::jsonb, COALESCE($4::timestamptz, now()) + make_interval(secs => $5))
    RETURNING id, run_at
)
SELECT id, CASE WHEN job.run_at <= now() AND (
    SELECT count(*) FROM (
        SELECT 1 FROM marquee_jobs
        WHERE state = 'queued' AND queue = $1 AND run_at <= now() LIMIT $7
    ) AS ahead
) < $7 THEN pg_notify($6, '') END FROM job"""

# The key row is taken only if it is new or its window has passed. ON CONFLICT makes
# a concurrent duplicate wait for the first insert's commit and then see its window.
INSERT_UNIQUE_JOB = """WITH claimed AS (
    INSERT INTO marquee_job_keys (kind, unique_key, expires_at)
    VALUES ($2, $7, now() + make_interval(secs => $8))
    ON CONFLICT (kind, unique_key) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE marquee_job_keys.expires_at <= now()
    RETURNING 1
), job AS (
    INSERT INTO marquee_jobs (queue, kind, payload, run_at)
    SELECT $1, $2, $3::jsonb, COALESCE($4::timestamptz, now()) + make_interval(secs => $5)
    WHERE EXISTS (SELECT 1 FROM claimed)
    RETURNING id, run_at
)
SELECT id, CASE WHEN job.run_at <= now() AND (
    SELECT count(*) FROM (
        SELECT 1 FROM marquee_jobs
        WHERE state = 'queued' AND queue = $1 AND run_at <= now() LIMIT $9
    ) AS ahead
) < $9 THEN pg_notify($6, '') END FROM job"""


class JobQueue:
    """Puts jobs on the queue table; any process with the pool can enqueue."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def enqueue(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        queue: str = "default",
        run_at: datetime | None = None,
        delay: float = 0.0,
        unique_key: str | None = None,
        unique_for: float | None = None,
        conn: Connection | None = None,
    ) -> int | None:
        """Add a job; returns its id, or None when `unique_key` was already used within the window.

        `run_at`/`delay` schedule it for later. `unique_key` (per kind) with
        `unique_for` seconds: a second enqueue with the same key inside that window,
        counted from the first enqueue, adds nothing. Pass `conn` to enqueue inside
        your own transaction, so the job exists only if your writes commit.
        """
        if (unique_key is None) != (unique_for is None):
            raise ValueError("unique_key and unique_for go together")
        if unique_for is not None and unique_for <= 0:
            raise ValueError("unique_for must be positive")
        args: list[Any] = [
            queue, kind, json.dumps(payload or {}), run_at, delay, channel_for(queue)
        ]  # fmt: skip
        if unique_key is not None:
            sql = INSERT_UNIQUE_JOB
            args += [unique_key, unique_for, NOTIFY_BACKLOG]
        else:
            sql = INSERT_JOB
            args += [NOTIFY_BACKLOG]
        if conn is not None:
            job_id: int | None = await conn.fetchval(sql, *args)
        else:
            job_id = await self.pool.fetchval(sql, *args)
        return job_id
