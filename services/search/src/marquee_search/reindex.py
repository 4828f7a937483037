"""Reindexing as a queued job (marquee-jobs), one per collection, with progress in PostgreSQL.

A Reindex request enqueues the kind `search.reindex` with unique key
`reindex:<collection>`; while that job is queued or running, another request
returns it. The progress lives in `search_reindex` (migration set `search`),
one row per collection, so GetCollection on any replica reads it; the queue's
own row (`marquee_jobs`) says whether the job still waits, retries or gave up.

Why a table rather than a file beside the embedded index: the Typesense backend
has no local files, and with it several replicas answer GetCollection while
whichever replica claimed the job does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import grpc

from marquee_jobs import Job, JobQueue
from marquee_platform import errors
from marquee_search.backend import (
    CollectionNotFound,
    EngineRejected,
    ReindexProgress,
    SchemaConflict,
    SearchBackend,
)

KIND = "search.reindex"
# A queue of its own with one slot per process: a rebuild is CPU and memory
# heavy, so two of them (two collections) never run side by side in one process.
QUEUE = "search"
QUEUES = {QUEUE: 1}
# The unique key's window only has to outlast a job; the key is released as soon
# as a new request finds the previous job ended (below), so this is a backstop.
UNIQUE_WINDOW = 7 * 24 * 3600.0
# How often a running job writes its counts.
PUBLISH_INTERVAL = 0.25
# Advisory lock class of Reindex requests (second key: hashtext of the unique key).
LOCK_CLASS = 0x5352  # "SR"

ACTIVE = ("queued", "running")

REQUEST_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
CURRENT = """SELECT r.job_id, r.state, j.state AS job_state
FROM search_reindex r LEFT JOIN marquee_jobs j ON j.id = r.job_id
WHERE r.collection = $1"""
# The previous job ended; its key's window must not keep the next one out.
RELEASE_KEY = """UPDATE marquee_job_keys SET expires_at = now()
WHERE kind = $1 AND unique_key = $2"""
RECORD = """INSERT INTO search_reindex (collection, job_id) VALUES ($1, $2)
ON CONFLICT (collection) DO UPDATE SET job_id = EXCLUDED.job_id, state = 'queued',
    documents_done = 0, documents_total = 0, requested_at = now(),
    started_at = NULL, finished_at = NULL, error = ''"""
PROGRESS = """SELECT r.job_id, r.state, r.documents_done, r.documents_total, r.started_at,
    r.finished_at, r.error, j.state AS job_state, j.last_error, j.finished_at AS job_finished_at
FROM search_reindex r LEFT JOIN marquee_jobs j ON j.id = r.job_id
WHERE r.collection = $1"""
# Every write names the job: a late write of an older job never touches a newer one's row.
STARTED = """UPDATE search_reindex SET state = 'running', started_at = now(), finished_at = NULL,
    documents_done = 0, documents_total = 0, error = ''
WHERE collection = $1 AND job_id = $2"""
COUNTS = """UPDATE search_reindex SET documents_done = $3, documents_total = $4
WHERE collection = $1 AND job_id = $2"""
FINISHED = """UPDATE search_reindex SET state = $3, documents_done = $4, documents_total = $5,
    error = $6, finished_at = now()
WHERE collection = $1 AND job_id = $2"""
# An attempt that failed and may be retried: the error shows, the queue decides.
ATTEMPT_FAILED = """UPDATE search_reindex SET error = $3
WHERE collection = $1 AND job_id = $2"""
FORGET = "DELETE FROM search_reindex WHERE collection = $1"


class Logger(Protocol):
    """What the job needs of the service's (structlog) logger."""

    def warning(self, event: str, **fields: Any) -> Any: ...


def unique_key(collection: str) -> str:
    return f"reindex:{collection}"


@dataclass(frozen=True)
class Progress:
    job_id: int
    state: str  # queued, running, succeeded, failed
    done: int
    total: int
    started_at: datetime | None
    finished_at: datetime | None
    error: str


def _effective(row: asyncpg.Record) -> Progress:
    """The row's own state, corrected by what the queue knows and the handler could not write."""
    state: str = row["state"]
    error: str = row["error"]
    finished_at: datetime | None = row["finished_at"]
    job_state: str | None = row["job_state"]
    if state in ACTIVE:
        if job_state == "failed":
            # Timed out (the handler was cancelled) or out of attempts.
            state = "failed"
            error = error or (row["last_error"] or "the job failed")
            finished_at = row["job_finished_at"]
        elif job_state == "queued":
            state = "queued"  # waiting for a retry, or requeued after a worker died
    return Progress(
        job_id=row["job_id"],
        state=state,
        done=row["documents_done"],
        total=row["documents_total"],
        started_at=row["started_at"],
        finished_at=finished_at,
        error=error,
    )


class Reindexer:
    """Requests reindex jobs, runs them (as the `search.reindex` kind), reports progress."""

    def __init__(self, pool: asyncpg.Pool, backend: SearchBackend, log: Logger) -> None:
        self._log = log
        self._pool = pool
        self._queue = JobQueue(pool)
        self._backend = backend

    async def request(self, collection: str) -> tuple[int, bool]:
        """(job id, already queued): the running or queued job, else a new one."""
        key = unique_key(collection)
        async with self._pool.acquire() as conn, conn.transaction():
            # Requests for one collection queue up here, on every replica: the
            # check below and the enqueue are one step.
            await conn.execute(REQUEST_LOCK, LOCK_CLASS, key)
            current = await conn.fetchrow(CURRENT, collection)
            if (
                current is not None
                and current["state"] in ACTIVE
                and current["job_state"] in ACTIVE
            ):
                return int(current["job_id"]), True
            await conn.execute(RELEASE_KEY, KIND, key)
            job_id = await self._queue.enqueue(
                KIND,
                {"collection": collection},
                queue=QUEUE,
                unique_key=key,
                unique_for=UNIQUE_WINDOW,
                conn=conn,
            )
            if job_id is None:  # only if something outside this class took the key
                raise errors.ServiceError(
                    grpc.StatusCode.ABORTED,
                    f"the job key {key!r} is held by a job this service did not record",
                )
            await conn.execute(RECORD, collection, job_id)
        return job_id, False

    async def progress(self, collection: str) -> Progress | None:
        row = await self._pool.fetchrow(PROGRESS, collection)
        return None if row is None else _effective(row)

    async def forget(self, collection: str) -> None:
        """The collection was dropped: a new one of the same name starts with no history."""
        await self._pool.execute(FORGET, collection)

    async def run(self, job: Job) -> None:
        """The job's handler: rebuild, publishing the counts as they grow."""
        collection = str(job.payload["collection"])
        await self._pool.execute(STARTED, collection, job.id)
        progress = ReindexProgress()
        publisher = asyncio.create_task(self._publish(collection, job.id, progress))
        try:
            await self._backend.reindex(collection, progress)
        except (CollectionNotFound, SchemaConflict, EngineRejected) as exc:
            # Trying again would fail the same way: report it and end the job.
            await self._stop(publisher)
            message = (
                f"collection {collection!r} does not exist"
                if isinstance(exc, CollectionNotFound)
                else str(exc)
            )
            await self._finish(collection, job.id, "failed", progress, message)
            return
        except Exception as exc:
            # Possibly transient (the engine unreachable): the queue retries it.
            await self._stop(publisher)
            await self._pool.execute(
                ATTEMPT_FAILED, collection, job.id, f"attempt {job.attempt}: {exc}"
            )
            raise
        except BaseException:
            publisher.cancel()
            raise
        await self._stop(publisher)
        await self._finish(collection, job.id, "succeeded", progress, "")

    async def _finish(
        self, collection: str, job_id: int, state: str, progress: ReindexProgress, error: str
    ) -> None:
        await self._pool.execute(
            FINISHED, collection, job_id, state, progress.done, progress.total, error
        )

    @staticmethod
    async def _stop(publisher: asyncio.Task[Any]) -> None:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher

    async def _publish(self, collection: str, job_id: int, progress: ReindexProgress) -> None:
        written = (-1, -1)
        while True:
            counts = (progress.done, progress.total)
            if counts != written:
                try:
                    await self._pool.execute(COUNTS, collection, job_id, *counts)
                    written = counts
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # The counts are a view for people: a database blip must not fail
                    # the rebuild. The next round tries again; the outcome is written
                    # at the end either way.
                    self._log.warning(
                        "reindex progress not written", collection=collection, error=str(exc)
                    )
            await asyncio.sleep(PUBLISH_INTERVAL)
