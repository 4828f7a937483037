"""start_job_runtime inside a served service: cleanup under its lease, metrics scraped over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from collections import Counter

import asyncpg
import grpc
from jobs_helpers import eventually
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from marquee_jobs import Job, Kind, PeriodicJob, cleanup_job
from marquee_jobs.service import JobRuntime, start_job_runtime
from marquee_lease import CoordinatorClient, LeaseInfo
from marquee_platform import ServiceContext, ServiceSettings
from marquee_testing.coordinator import CoordinatorCluster
from marquee_testing.inprocess import serving

LEASE = "jobs/cleanup"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def quick_cleanup(pool: asyncpg.Pool) -> PeriodicJob:
    # A short TTL so losing the lease shows within a second.
    return dataclasses.replace(cleanup_job(pool, interval=0.2), lease_ttl=1.5)


async def noop(job: Job) -> None:
    pass


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text: str = reply.read().decode()
        return text


def samples(text: str) -> Samples:
    """Every sample by (name, labels); asserts no family and no sample appears twice."""
    families = list(text_string_to_metric_families(text))
    names = Counter(family.name for family in families)
    assert [name for name, n in names.items() if n > 1] == []
    keys = Counter(
        (s.name, tuple(sorted(s.labels.items()))) for family in families for s in family.samples
    )
    assert [key for key, n in keys.items() if n > 1] == []
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_runtime_runs_cleanup_under_its_lease_and_exports_each_metric_once(
    scratch_database_url: str, coordinator_cluster: CoordinatorCluster
) -> None:
    runtimes: list[JobRuntime] = []

    async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
        runtime = await start_job_runtime(
            ctx,
            scratch_database_url,
            coordinator_cluster.endpoints,
            periodic=[quick_cleanup],
            kinds=[Kind("noop", noop)],
            retry_interval=0.1,
        )
        runtimes.append(runtime)
        return []

    # The registry is the process's: other tests of the session count there too.
    runs = ("marquee_jobs_periodic_runs_total", {"job": "cleanup", "outcome": "succeeded"})
    runs_before = REGISTRY.get_sample_value(*runs) or 0.0
    settings = ServiceSettings(metrics_port=0, shutdown_grace_seconds=2)
    async with (
        CoordinatorClient(coordinator_cluster.endpoints, timeout=2.0) as client,
        serving("jobs-runtime", settings, register) as service,
    ):
        port = service.info.metrics_port
        assert port is not None
        holder = runtimes[0].holder_id

        async def read() -> Samples:
            return samples(await asyncio.to_thread(scrape, port))

        async def cleanup_ran() -> bool:
            return value(await read(), runs[0], **runs[1]) > runs_before

        await eventually(cleanup_ran, timeout=10)
        lease = await client.get(LEASE)
        assert isinstance(lease, LeaseInfo)
        assert lease.holder_id == holder
        # The schema came from migrate-on-start; the job wrote through the fence.
        fenced = await runtimes[0].pool.fetchval(
            "SELECT token FROM marquee_fencing WHERE resource = $1", LEASE
        )
        assert fenced == lease.token

        text = await asyncio.to_thread(scrape, port)
        assert text.count("# TYPE marquee_jobs_queue_depth gauge") == 1
        before = samples(text)
        for state in ("queued", "running", "succeeded", "failed"):
            assert ("marquee_jobs_queue_depth", (("queue", "default"), ("state", state))) in before

        # The lease is taken away: the lost counter moves, and it is held again.
        assert await client.release(LEASE, holder, lease.token)

        async def lost_and_held_again() -> bool:
            now = await read()
            return all(
                value(now, name, lease=LEASE) == value(before, name, lease=LEASE) + 1
                for name in ("marquee_jobs_lease_lost_total", "marquee_jobs_lease_held_total")
            )

        await eventually(lost_and_held_again, timeout=10)
        again = await client.get(LEASE)
        assert again is not None
        assert again.token > lease.token
    # Stopping the service gave the lease back instead of leaving it to expire.
    async with CoordinatorClient(coordinator_cluster.endpoints, timeout=2.0) as client:
        assert await client.get(LEASE) is None
