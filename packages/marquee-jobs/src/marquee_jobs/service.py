"""The job library inside a service: one call from a registrar wires it to the platform.

    await start_job_runtime(ctx, str(settings.database_url), settings.coordinator_endpoints,
                            periodic=[cleanup_job])

It checks (or applies) the `jobs` schema, then runs a Worker for `kinds` and a
lease-gated PeriodicRunner for `periodic` as tasks the service context owns.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from marquee_jobs.coordinator import CoordinatorLeases
from marquee_jobs.models import Kind
from marquee_jobs.periodic import PeriodicJob, PeriodicRunner
from marquee_jobs.queue import JobQueue
from marquee_jobs.schema import MIGRATIONS
from marquee_jobs.worker import Worker
from marquee_lease import CoordinatorClient
from marquee_migrations import migrate_on_start
from marquee_platform import ServiceContext

# A periodic job is built once the pool exists: `cleanup_job` itself fits.
PeriodicFactory = Callable[[asyncpg.Pool], PeriodicJob]

# Coordinator calls give up after this: a release on shutdown must not eat the
# drain time when the coordinator is stopping too (the lease then just expires).
COORDINATOR_TIMEOUT = 1.0
# How long stopping waits for the tasks to end (leases released, running jobs
# handed back) before the drain goes on; close() cancels and awaits what is left.
STOP_WAIT = 1.5


@dataclass(frozen=True)
class JobRuntime:
    pool: asyncpg.Pool
    queue: JobQueue
    # The holder id the coordinator shows for this process's periodic-job leases.
    holder_id: str


async def start_job_runtime(
    ctx: ServiceContext,
    database_url: str,
    coordinator_endpoints: Sequence[str],
    *,
    periodic: Sequence[PeriodicFactory] = (),
    kinds: Sequence[Kind] = (),
    queues: Mapping[str, int] | None = None,
    migrate: bool = True,
    pool_size: int = 4,
    retry_interval: float = 1.0,
) -> JobRuntime:
    """Start the queue's worker and periodic jobs for the life of the service.

    With `migrate` the `jobs` migrations are applied first; either way the
    service refuses to start on a dirty or outdated schema. Periodic jobs run
    only while this process holds their coordinator lease (K-8). A service with
    no `kinds` runs no worker (it may still enqueue through `runtime.queue`).
    """
    if periodic and not coordinator_endpoints:
        raise ValueError("periodic jobs need coordinator endpoints: there is no other leader")
    await migrate_on_start(database_url, MIGRATIONS, apply=migrate)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size)
    client = CoordinatorClient(coordinator_endpoints, timeout=COORDINATOR_TIMEOUT)
    # Readable (service, host, pid) and unique per runtime: the coordinator treats
    # an acquire by the current holder as a renewal, so two runtimes in one
    # process must not share an id.
    holder_id = f"{ctx.name}@{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    jobs = [make(pool) for make in periodic]
    tasks: list[asyncio.Task[Any]] = []
    if kinds:
        tasks.append(ctx.spawn(Worker(pool, kinds, queues).run(), name="jobs worker"))
    if jobs:
        leases = CoordinatorLeases(client, holder_id=holder_id)
        runner = PeriodicRunner(leases, jobs, retry_interval=retry_interval)
        tasks.append(ctx.spawn(runner.run(), name="periodic jobs"))

    async def stop_jobs() -> None:
        # Before the drain, while the coordinator likely still answers: a released
        # lease lets another replica take the job over now instead of after a TTL.
        # Running jobs go back to the queue without spending an attempt.
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)

    async def close() -> None:
        await client.close()
        await pool.close()

    ctx.on_stop(stop_jobs)
    ctx.on_shutdown(close)
    ctx.log.info(
        "jobs started",
        periodic=[job.name for job in jobs],
        kinds=[kind.name for kind in kinds],
        holder_id=holder_id,
    )
    return JobRuntime(pool=pool, queue=JobQueue(pool), holder_id=holder_id)
