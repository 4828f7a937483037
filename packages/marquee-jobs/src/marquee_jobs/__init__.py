"""Jobs on PostgreSQL: a SKIP LOCKED queue and lease-gated periodic jobs.

    queue = JobQueue(pool)
    await queue.enqueue("notify", {"user": 7}, unique_key="notify:7", unique_for=3600)
    worker = Worker(pool, [Kind("notify", send, max_attempts=5)], {"default": 4})
    ctx.spawn(worker.run(), name="jobs")
    leases = CoordinatorLeases(client)  # from marquee_jobs.coordinator
    runner = PeriodicRunner(leases, [cleanup_job(pool)])
    ctx.spawn(runner.run(), name="periodic jobs")

In a service, `marquee_jobs.service.start_job_runtime(ctx, ...)` does all of this
from the registrar. The tables come from the `jobs` migration set
(`marquee_jobs.schema.MIGRATIONS`).
See docs/jobs.md.
"""

from marquee_jobs.cleanup import CleanupReport, clean_queue, cleanup_job
from marquee_jobs.fencing import StaleToken, fenced_write
from marquee_jobs.leases import Lease, LeaseBusy, LeaseSource
from marquee_jobs.models import Backoff, Handler, Job, Kind
from marquee_jobs.periodic import PeriodicJob, PeriodicRunner
from marquee_jobs.queue import JobQueue
from marquee_jobs.schema import MIGRATIONS
from marquee_jobs.worker import Worker

__all__ = [
    "MIGRATIONS",
    "Backoff",
    "CleanupReport",
    "Handler",
    "Job",
    "JobQueue",
    "Kind",
    "Lease",
    "LeaseBusy",
    "LeaseSource",
    "PeriodicJob",
    "PeriodicRunner",
    "StaleToken",
    "Worker",
    "clean_queue",
    "cleanup_job",
    "fenced_write",
]
