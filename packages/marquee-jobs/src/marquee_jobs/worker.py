"""Workers: claim ready jobs with SKIP LOCKED, run them with a timeout, record the outcome.

Every task a worker starts lives in one TaskGroup under `run()`: cancelling
`run()` cancels each running job (which goes back to the queue without spending
an attempt) and awaits all of them before `run()` returns (J-3).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence

import asyncpg

from marquee_jobs.metrics import JOB_OUTCOMES, JOB_RETRIES, QUEUE_DEPTH
from marquee_jobs.models import Job, Kind

log = logging.getLogger(__name__)

CLAIM = """WITH picked AS (
    SELECT id FROM marquee_jobs
    WHERE state = 'queued' AND queue = $1 AND run_at <= now() AND kind = ANY($2::text[])
    ORDER BY run_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE marquee_jobs j
SET state = 'running', attempts = j.attempts + 1, locked_until = now() + make_interval(secs => $4)
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.kind, j.payload, j.attempts"""

# Each update names the attempt it finishes: if cleanup requeued a claim it took
# for abandoned and another worker took it, this worker's late answer changes nothing.
SUCCEED = """UPDATE marquee_jobs SET state = 'succeeded', finished_at = now(), locked_until = NULL,
    last_error = NULL
WHERE id = $1 AND attempts = $2 AND state = 'running'"""
RETRY = """UPDATE marquee_jobs SET state = 'queued', run_at = now() + make_interval(secs => $3),
    locked_until = NULL, last_error = $4
WHERE id = $1 AND attempts = $2 AND state = 'running'"""
FAIL = """UPDATE marquee_jobs SET state = 'failed', finished_at = now(), locked_until = NULL,
    last_error = $3
WHERE id = $1 AND attempts = $2 AND state = 'running'"""
# Shutdown interrupted the attempt: it was not the job's fault, so it is not counted.
RELEASE = """UPDATE marquee_jobs SET state = 'queued', attempts = attempts - 1, locked_until = NULL
WHERE id = $1 AND attempts = $2 AND state = 'running'"""
DEPTH = """SELECT queue, state, count(*) AS n FROM marquee_jobs
WHERE queue = ANY($1::text[]) GROUP BY queue, state"""

# A claim is abandoned (and requeued by cleanup) this long after the kind's timeout.
CLAIM_GRACE = 30.0
RELEASE_TIMEOUT = 5.0


class Worker:
    """Runs jobs of `kinds` from `queues` (queue name -> how many run at once)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        kinds: Sequence[Kind],
        queues: Mapping[str, int] | None = None,
        *,
        poll_interval: float = 0.5,
        depth_interval: float = 5.0,
    ) -> None:
        if not kinds:
            raise ValueError("a worker needs at least one kind of job to run")
        self.pool = pool
        self.kinds = {kind.name: kind for kind in kinds}
        self.queues = dict(queues or {"default": 1})
        if any(n < 1 for n in self.queues.values()):
            raise ValueError("every queue needs a concurrency of at least 1")
        self.poll_interval = poll_interval
        self.depth_interval = depth_interval
        self._claim_seconds = max(kind.timeout for kind in kinds) + CLAIM_GRACE

    async def run(self) -> None:
        """Work until cancelled; returns (by raising CancelledError) once every task ended."""
        async with asyncio.TaskGroup() as group:
            for queue, concurrency in self.queues.items():
                group.create_task(self._serve(group, queue, concurrency), name=f"jobs {queue}")
            group.create_task(self._report_depth(), name="jobs depth")

    async def _serve(self, group: asyncio.TaskGroup, queue: str, concurrency: int) -> None:
        running: set[asyncio.Task[None]] = set()
        while True:
            if len(running) >= concurrency:
                _done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                jobs = await self._claim(queue, concurrency - len(running))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("claiming from queue %r failed, retrying: %s", queue, exc)
                jobs = []
            for job in jobs:
                running.add(group.create_task(self._execute(job), name=f"job {job.id}"))
            if not jobs:
                await asyncio.sleep(self.poll_interval)

    async def _claim(self, queue: str, limit: int) -> list[Job]:
        rows = await self.pool.fetch(CLAIM, queue, list(self.kinds), limit, self._claim_seconds)
        return [
            Job(
                id=row["id"],
                queue=queue,
                kind=row["kind"],
                payload=json.loads(row["payload"]),
                attempt=row["attempts"],
            )
            for row in rows
        ]

    async def _execute(self, job: Job) -> None:
        kind = self.kinds[job.kind]
        if job.attempt > kind.max_attempts:
            # Only a claim abandoned by a dead worker and requeued by cleanup gets here.
            await self._finish(job, FAIL, job.id, job.attempt, "gave up: last attempt abandoned")
            JOB_OUTCOMES.labels(job.kind, "failed").inc()
            return
        try:
            async with asyncio.timeout(kind.timeout):
                await kind.handler(job)
        except asyncio.CancelledError:
            await self._release(job)
            raise
        except TimeoutError:
            await self._failed(job, kind, f"timed out after {kind.timeout:g}s", "timeout")
        except Exception as exc:
            log.warning(
                "job %d (%s) attempt %d failed", job.id, job.kind, job.attempt, exc_info=True
            )
            await self._failed(job, kind, f"{type(exc).__name__}: {exc}", "error")
        else:
            await self._finish(job, SUCCEED, job.id, job.attempt)
            JOB_OUTCOMES.labels(job.kind, "succeeded").inc()

    async def _failed(self, job: Job, kind: Kind, error: str, reason: str) -> None:
        if job.attempt >= kind.max_attempts:
            await self._finish(job, FAIL, job.id, job.attempt, error)
            JOB_OUTCOMES.labels(job.kind, "failed").inc()
            return
        delay = kind.backoff.delay(job.attempt)
        await self._finish(job, RETRY, job.id, job.attempt, delay, error)
        JOB_RETRIES.labels(job.kind, reason).inc()

    async def _finish(self, job: Job, sql: str, *args: object) -> None:
        try:
            await self.pool.execute(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The claim stays 'running' until it is abandoned and cleanup requeues it.
            log.error("could not record the outcome of job %d: %s", job.id, exc)

    async def _release(self, job: Job) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self.pool.execute(RELEASE, job.id, job.attempt)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not hand job %d back to the queue: %s", job.id, exc)

    async def _report_depth(self) -> None:
        while True:
            try:
                rows = await self.pool.fetch(DEPTH, list(self.queues))
                QUEUE_DEPTH.update({(r["queue"], r["state"]): r["n"] for r in rows}, self.queues)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("reading queue depth failed: %s", exc)
            await asyncio.sleep(self.depth_interval)
