"""Workers: claim ready jobs with SKIP LOCKED, run them with a timeout, record the outcome.

Every task a worker starts lives in one TaskGroup under `run()`: cancelling
`run()` cancels each running job (which goes back to the queue without spending
an attempt) and awaits all of them before `run()` returns (J-3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from marquee_jobs.metrics import JOB_OUTCOMES, JOB_RETRIES, QUEUE_DEPTH
from marquee_jobs.models import Job, Kind
from marquee_jobs.queue import channel_for

log = logging.getLogger(__name__)

# One statement, one round trip, one commit: record the outcomes finished since
# the last claim, then claim up to $3 ready jobs. The outcome rows are 'running'
# and the claim picks only 'queued' ones, so the two parts never touch the same
# row; a data-modifying CTE runs to completion even though nothing reads it.
# Each outcome names the attempt it finishes: if cleanup requeued a claim it took
# for abandoned and another worker took it, this worker's late answer changes
# nothing, and writing the same outcomes twice (a retry after a lost reply) is a
# no-op the second time.
CLAIM = """WITH outcome AS (
    UPDATE marquee_jobs j
    SET state = o.state,
        finished_at = CASE WHEN o.state = 'queued' THEN NULL ELSE now() END,
        run_at = CASE WHEN o.state = 'queued'
            THEN now() + make_interval(secs => o.delay) ELSE j.run_at END,
        locked_until = NULL,
        last_error = o.error
    FROM unnest($5::bigint[], $6::integer[], $7::text[], $8::float8[], $9::text[])
        AS o(id, attempt, state, delay, error)
    -- id = ANY: found through the primary key, however many jobs are running.
    WHERE j.id = ANY($5::bigint[]) AND j.id = o.id AND j.attempts = o.attempt
        AND j.state = 'running'
), picked AS (
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
# Shutdown interrupted the attempt: it was not the job's fault, so it is not counted.
RELEASE = """UPDATE marquee_jobs SET state = 'queued', attempts = attempts - 1, locked_until = NULL
WHERE id = $1 AND attempts = $2 AND state = 'running'"""
DEPTH = """SELECT queue, state, count(*) AS n FROM marquee_jobs
WHERE queue = ANY($1::text[]) GROUP BY queue, state"""

# A claim is abandoned (and requeued by cleanup) this long after the kind's timeout.
CLAIM_GRACE = 30.0
RELEASE_TIMEOUT = 5.0
GAVE_UP = "gave up: last attempt abandoned"
# How often the listener connection proves it is alive while nothing arrives:
# a half-open TCP connection raises no event of its own.
LISTEN_CHECK_INTERVAL = 10.0
LISTEN_RETRY_INTERVAL = 1.0


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, waiting to be written with the queue's next claim."""

    job_id: int
    attempt: int
    state: str  # 'succeeded', 'failed', or 'queued' (a retry after `delay` seconds)
    delay: float = 0.0
    error: str | None = None


class _QueueState:
    """One queue's outcomes not yet written and the event that wakes its loop."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        # Set by a finished job (its outcome is waiting, and a slot is free) and
        # by a notification from an enqueue on this queue.
        self.wake = asyncio.Event()


class Worker:
    """Runs jobs of `kinds` from `queues` (queue name -> how many run at once).

    `poll_interval`: how long an idle queue waits before looking again when no
    notification came (the fallback for a lost listener and for scheduled jobs).
    `claim_batch`: at most this many jobs per claim statement (default: as many
    as the queue has free slots). `listen`: wake on the queues' NOTIFY channels.
    The listener holds one pool connection for the worker's life and each busy
    queue one while busy, both only if the pool leaves two others spare.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        kinds: Sequence[Kind],
        queues: Mapping[str, int] | None = None,
        *,
        poll_interval: float = 0.5,
        depth_interval: float = 5.0,
        claim_batch: int | None = None,
        listen: bool = True,
    ) -> None:
        if not kinds:
            raise ValueError("a worker needs at least one kind of job to run")
        self.pool = pool
        self.kinds = {kind.name: kind for kind in kinds}
        self.queues = dict(queues or {"default": 1})
        if any(n < 1 for n in self.queues.values()):
            raise ValueError("every queue needs a concurrency of at least 1")
        if claim_batch is not None and claim_batch < 1:
            raise ValueError("claim_batch must be at least 1")
        self.poll_interval = poll_interval
        self.depth_interval = depth_interval
        self.claim_batch = claim_batch
        self._claim_seconds = max(kind.timeout for kind in kinds) + CLAIM_GRACE
        self._state = {queue: _QueueState() for queue in self.queues}
        self._channels = {channel_for(queue): queue for queue in self.queues}
        # The listener and each busy queue's loop hold a connection: only when the
        # pool leaves at least two more for handlers, enqueues and depth reads.
        spare = pool.get_max_size() - 2
        self.listen = listen and spare >= 1
        self._hold_connections = spare - int(self.listen) >= len(self.queues)
        # The listener's current connection (tests terminate it to prove polling covers).
        self.listener_pid: int | None = None

    async def run(self) -> None:
        """Work until cancelled; returns (by raising CancelledError) once every task ended."""
        async with asyncio.TaskGroup() as group:
            for queue, concurrency in self.queues.items():
                group.create_task(self._serve(group, queue, concurrency), name=f"jobs {queue}")
            group.create_task(self._report_depth(), name="jobs depth")
            if self.listen:
                group.create_task(self._listen(), name="jobs listener")

    async def _serve(self, group: asyncio.TaskGroup, queue: str, concurrency: int) -> None:
        state = self._state[queue]
        running: set[asyncio.Task[None]] = set()
        # While the queue is busy its loop keeps one connection between claims: a
        # pool round (acquire, and asyncpg's reset query on release) per claim cost
        # about as much as the claim itself. Given back as soon as the queue idles.
        held: PoolConnectionProxy | None = None
        try:
            while True:
                free = concurrency - len(running)
                if free <= 0:
                    # Wakes when a job ends; its outcome goes out with the next claim.
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                limit = free if self.claim_batch is None else min(free, self.claim_batch)
                # Cleared before the claim: a notification or a finished job during
                # the statement leaves it set, and the wait below returns at once.
                state.wake.clear()
                outcomes, state.outcomes = state.outcomes, []
                try:
                    if held is None and self._hold_connections:
                        held = await self.pool.acquire()
                    jobs = await self._claim(held or self.pool, queue, limit, outcomes)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("claiming from queue %r failed, retrying: %s", queue, exc)
                    # Written with a later claim; each update is guarded by its attempt.
                    state.outcomes[:0] = outcomes
                    held, conn = None, held
                    await self._give_back(conn)
                    await asyncio.sleep(self.poll_interval)
                    continue
                for job in jobs:
                    task = group.create_task(self._execute(job), name=f"job {job.id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                if len(jobs) < limit:
                    held, conn = None, held
                    await self._give_back(conn)
                    # Nothing more is ready: wait for a notification, a finished job
                    # or the poll interval, whichever comes first.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_interval):
                            await state.wake.wait()
        finally:
            await self._give_back(held)
            # Outcomes of jobs that finished before shutdown: written now rather than
            # left 'running' for cleanup to requeue and run again.
            if state.outcomes:
                await asyncio.shield(self._flush(queue))

    async def _give_back(self, held: PoolConnectionProxy | None) -> None:
        # Callers forget `held` first: a release cut short by cancellation (asyncpg
        # then terminates the connection) must not be followed by a second one.
        if held is not None:
            try:
                await self.pool.release(held, timeout=RELEASE_TIMEOUT)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # asyncpg terminates a connection it could not reset; the pool opens another.
                log.warning("returning a jobs connection to the pool failed: %s", exc)

    async def _flush(self, queue: str) -> None:
        outcomes, self._state[queue].outcomes = self._state[queue].outcomes, []
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self._claim(self.pool, queue, 0, outcomes)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The claims stay 'running' until they are abandoned and cleanup requeues them.
            log.error("could not record the outcomes of %d jobs: %s", len(outcomes), exc)

    async def _claim(
        self,
        db: asyncpg.Pool | PoolConnectionProxy,
        queue: str,
        limit: int,
        outcomes: Sequence[Outcome],
    ) -> list[Job]:
        # In id order: two statements updating overlapping rows lock them in one order.
        done = sorted(outcomes, key=lambda o: o.job_id)
        rows = await db.fetch(
            CLAIM,
            queue,
            list(self.kinds),
            limit,
            self._claim_seconds,
            [o.job_id for o in done],
            [o.attempt for o in done],
            [o.state for o in done],
            [o.delay for o in done],
            [o.error for o in done],
        )
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

    def _record(self, job: Job, outcome: Outcome) -> None:
        state = self._state[job.queue]
        state.outcomes.append(outcome)
        state.wake.set()

    async def _execute(self, job: Job) -> None:
        kind = self.kinds[job.kind]
        if job.attempt > kind.max_attempts:
            # Only a claim abandoned by a dead worker and requeued by cleanup gets here.
            self._record(job, Outcome(job.id, job.attempt, "failed", error=GAVE_UP))
            JOB_OUTCOMES.labels(job.kind, "failed").inc()
            return
        try:
            async with asyncio.timeout(kind.timeout):
                await kind.handler(job)
        except asyncio.CancelledError:
            await self._release(job)
            raise
        except TimeoutError:
            self._failed(job, kind, f"timed out after {kind.timeout:g}s", "timeout")
        except Exception as exc:
            log.warning(
                "job %d (%s) attempt %d failed", job.id, job.kind, job.attempt, exc_info=True
            )
            self._failed(job, kind, f"{type(exc).__name__}: {exc}", "error")
        else:
            self._record(job, Outcome(job.id, job.attempt, "succeeded"))
            JOB_OUTCOMES.labels(job.kind, "succeeded").inc()

    def _failed(self, job: Job, kind: Kind, error: str, reason: str) -> None:
        if job.attempt >= kind.max_attempts:
            self._record(job, Outcome(job.id, job.attempt, "failed", error=error))
            JOB_OUTCOMES.labels(job.kind, "failed").inc()
            return
        delay = kind.backoff.delay(job.attempt)
        self._record(job, Outcome(job.id, job.attempt, "queued", delay=delay, error=error))
        JOB_RETRIES.labels(job.kind, reason).inc()

    async def _release(self, job: Job) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self.pool.execute(RELEASE, job.id, job.attempt)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not hand job %d back to the queue: %s", job.id, exc)

    def _notified(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        queue = self._channels.get(channel)
        if queue is not None:
            self._state[queue].wake.set()

    async def _listen(self) -> None:
        """Hold a connection LISTENing on every queue's channel; reconnect when it is lost."""
        while True:
            try:
                await self._listen_once()
                log.warning("the jobs listener connection was lost; polling until it is back")
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("the jobs listener failed, polling until it is back: %s", exc)
            self.listener_pid = None
            await asyncio.sleep(LISTEN_RETRY_INTERVAL)

    async def _listen_once(self) -> None:
        """LISTEN on one connection until it is lost (returns) or fails a check (raises)."""
        lost = asyncio.Event()
        async with self.pool.acquire() as conn:
            conn.add_termination_listener(lambda _conn: lost.set())
            try:
                for channel in self._channels:
                    await conn.add_listener(channel, self._notified)
                self.listener_pid = conn.get_server_pid()
                # Whatever was enqueued while nobody listened: every queue looks once now.
                for state in self._state.values():
                    state.wake.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(LISTEN_CHECK_INTERVAL):
                            await lost.wait()
                    if not lost.is_set():
                        async with asyncio.timeout(LISTEN_CHECK_INTERVAL):
                            await conn.fetchval("SELECT 1")
            finally:
                # The connection goes back to the pool: it must not carry our callbacks
                # (asyncpg drops them before its UNLISTEN, so a failing UNLISTEN is fine).
                for channel in self._channels:
                    with contextlib.suppress(
                        TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError
                    ):
                        async with asyncio.timeout(RELEASE_TIMEOUT):
                            await conn.remove_listener(channel, self._notified)

    async def _report_depth(self) -> None:
        while True:
            try:
                rows = await self.pool.fetch(DEPTH, list(self.queues))
                QUEUE_DEPTH.update({(r["queue"], r["state"]): r["n"] for r in rows}, self.queues)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("reading queue depth failed: %s", exc)
            await asyncio.sleep(self.depth_interval)
