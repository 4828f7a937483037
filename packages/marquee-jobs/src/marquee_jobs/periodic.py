"""Lease-gated periodic jobs: each runs only on the runner holding its coordinator lease.

A runner tries to take `jobs/<name>`; while it holds it, it runs the work every
`interval`, passing the lease so writes can be fenced with its token. When the
lease is lost the running work is cancelled at once; a write that still lands
late is refused by `fenced_write`, since the next holder's token is higher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from marquee_jobs.fencing import StaleToken
from marquee_jobs.leases import Lease, LeaseBusy, LeaseSource
from marquee_jobs.metrics import LEASE_HELD, LEASE_LOST, PERIODIC_RUNS

log = logging.getLogger(__name__)

Work = Callable[[Lease], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    work: Work
    interval: float  # seconds between the end of one run and the start of the next
    timeout: float = 60.0
    lease_ttl: float = 10.0


class PeriodicRunner:
    """Runs `jobs`, each under its own lease. Cancel `run()` to stop; it awaits every task."""

    def __init__(
        self,
        leases: LeaseSource,
        jobs: Sequence[PeriodicJob],
        *,
        retry_interval: float = 1.0,
        lease_prefix: str = "jobs/",
    ) -> None:
        self.leases = leases
        self.jobs = list(jobs)
        self.retry_interval = retry_interval
        self.lease_prefix = lease_prefix

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._keep_running(job), name=f"periodic {job.name}")

    async def _keep_running(self, job: PeriodicJob) -> None:
        name = self.lease_prefix + job.name
        while True:
            try:
                async with self.leases.hold(name, job.lease_ttl) as lease:
                    LEASE_HELD.labels(name).inc()
                    log.info("holding %r with token %d", name, lease.token)
                    await self._while_held(job, lease)
                    if lease.lost.is_set():
                        LEASE_LOST.labels(name).inc()
            except LeaseBusy:
                pass
            except Exception:
                # A coordinator error must not end the loop: the job would never run again.
                log.exception("periodic job %r: lease handling failed", job.name)
            await asyncio.sleep(self.retry_interval)

    async def _while_held(self, job: PeriodicJob, lease: Lease) -> None:
        while lease.valid():
            outcome = await self._run_once(job, lease)
            PERIODIC_RUNS.labels(job.name, outcome).inc()
            if outcome == "lost":
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(job.interval):
                    await lease.lost.wait()

    async def _run_once(self, job: PeriodicJob, lease: Lease) -> str:
        """Run the work until it ends, times out, or the lease is lost; returns the outcome."""
        work = asyncio.create_task(job.work(lease), name=f"periodic {job.name} work")
        lost = asyncio.create_task(lease.lost.wait(), name=f"periodic {job.name} lost")
        try:
            await asyncio.wait(
                {work, lost}, timeout=job.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            work.cancel()
            lost.cancel()
            # Awaited even when we are being cancelled, so neither task outlives us.
            await asyncio.wait({work, lost})
        if not work.done() or work.cancelled():
            return "lost" if lease.lost.is_set() else "timeout"
        error = work.exception()
        if error is None:
            return "succeeded"
        if isinstance(error, StaleToken):
            log.warning("periodic job %r was fenced off: %s", job.name, error)
            return "fenced"
        log.error("periodic job %r failed", job.name, exc_info=error)
        return "error"
