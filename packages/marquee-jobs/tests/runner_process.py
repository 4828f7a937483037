"""One periodic-job runner as its own OS process, for the two-runner tests.

    python runner_process.py RUNNER DATABASE_URL JOB ENDPOINT[,ENDPOINT...]

Runs the periodic job JOB under the coordinator lease `jobs/JOB` through
CoordinatorLeases, the way a service does. Every run leaves its trace in the
tables `create_tables()` makes, each write fenced with the run's token:

- `runs`: a row when a run starts, `ended_at` set when it ends WORK_SECONDS later;
- `refusals`: a row whenever fenced_write refused one of this runner's writes.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import asyncpg

from marquee_jobs import Lease, PeriodicJob, PeriodicRunner, StaleToken, fenced_write
from marquee_jobs.coordinator import CoordinatorLeases
from marquee_lease import Backoff, CoordinatorClient

# Short enough for a test, at least the fast Raft timing's minimum (1.2 s).
LEASE_TTL = 1.5
# The middle of a job, where the tests kill or freeze its runner.
WORK_SECONDS = 1.0
INTERVAL = 0.1

TABLES = """
CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    runner text NOT NULL,
    token bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz
);
CREATE TABLE refusals (
    runner text NOT NULL,
    token bigint NOT NULL,
    highest bigint,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


async def create_tables(pool: asyncpg.Pool) -> None:
    await pool.execute(TABLES)


def job(pool: asyncpg.Pool, runner: str, name: str) -> PeriodicJob:
    resource = f"test/{name}"
    in_flight: set[asyncio.Task[None]] = set()

    async def refused(token: int, error: StaleToken) -> None:
        await pool.execute(
            "INSERT INTO refusals (runner, token, highest) VALUES ($1, $2, $3)",
            runner,
            token,
            error.highest,
        )

    async def finish(run_id: int, token: int) -> None:
        await asyncio.sleep(WORK_SECONDS)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await fenced_write(conn, resource, token)
                await conn.execute(
                    "UPDATE runs SET ended_at = clock_timestamp() WHERE id = $1", run_id
                )
        except StaleToken as error:
            await refused(token, error)
            raise

    async def work(lease: Lease) -> None:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await fenced_write(conn, resource, lease.token)
                run_id: int = await conn.fetchval(
                    "INSERT INTO runs (runner, token) VALUES ($1, $2) RETURNING id",
                    runner,
                    lease.token,
                )
        except StaleToken as error:
            await refused(lease.token, error)
            raise
        # The rest of the run is shielded from the runner's cancellation on purpose:
        # it plays a process whose write is already on its way when it freezes, the
        # case fencing exists for. Unshielded, whether the lease-lost cancellation or
        # the late write goes first after SIGCONT would be a race, and the refusal
        # would only sometimes be exercised.
        finishing = asyncio.create_task(finish(run_id, lease.token))
        in_flight.add(finishing)
        finishing.add_done_callback(in_flight.discard)
        await asyncio.shield(finishing)

    return PeriodicJob(name, work, interval=INTERVAL, timeout=30, lease_ttl=LEASE_TTL)


async def main(runner: str, database_url: str, name: str, endpoints: list[str]) -> None:
    async with (
        asyncpg.create_pool(database_url, min_size=1, max_size=3) as pool,
        CoordinatorClient(
            endpoints, timeout=1.0, backoff=Backoff(initial=0.05, maximum=0.3)
        ) as client,
    ):
        leases = CoordinatorLeases(client, holder_id=runner)
        await PeriodicRunner(leases, [job(pool, runner, name)], retry_interval=0.1).run()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {sys.argv[1]} %(name)s %(message)s"
    )
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")))
