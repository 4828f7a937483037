"""Lease-gated periodic jobs and fenced writes (J-1), with the in-memory lease double."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import asyncpg
import pytest
from jobs_helpers import eventually, running
from memory_leases import MemoryLeases
from prometheus_client import REGISTRY

from marquee_jobs import Lease, PeriodicJob, PeriodicRunner, StaleToken, fenced_write

LEASE = "jobs/tick"


class Ticks:
    """The work of one runner: a fenced insert of (runner, token); tracks overlap."""

    def __init__(self, pool: asyncpg.Pool, active: list[str]) -> None:
        self.pool = pool
        self.active = active
        self.overlaps = 0

    def job(self, runner: str) -> PeriodicJob:
        async def work(lease: Lease) -> None:
            self.active.append(runner)
            self.overlaps += len(self.active) > 1
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await fenced_write(conn, "tick", lease.token)
                    await conn.execute(
                        "INSERT INTO ticks (runner, token) VALUES ($1, $2)", runner, lease.token
                    )
                await asyncio.sleep(0.02)
            finally:
                self.active.remove(runner)

        return PeriodicJob("tick", work, interval=0.05, timeout=5)


async def rows(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    found = await pool.fetch("SELECT runner, token FROM ticks ORDER BY id")
    return [(r["runner"], r["token"]) for r in found]


async def test_a_periodic_job_runs_only_while_its_lease_is_held(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE ticks (id serial PRIMARY KEY, runner text, token bigint)")
    leases = MemoryLeases()
    ticks = Ticks(pool, [])
    lost_before = REGISTRY.get_sample_value("marquee_jobs_lease_lost_total", {"lease": LEASE}) or 0
    runners = {
        name: PeriodicRunner(leases, [ticks.job(name)], retry_interval=0.05) for name in "ab"
    }
    async with AsyncExitStack() as stack:
        # Someone else holds the lease: neither runner may run the job.
        outsider = AsyncExitStack()
        await outsider.enter_async_context(leases.hold(LEASE, ttl=10))
        for runner in runners.values():
            await stack.enter_async_context(running(runner.run()))
        await asyncio.sleep(0.3)
        assert await rows(pool) == []
        await outsider.aclose()

        async def ran_with(token: int) -> bool:
            return any(t == token for _, t in await rows(pool))

        await eventually(lambda: ran_with(2))
        first_holder = next(r for r, t in await rows(pool) if t == 2)
        # The holder stops renewing (killed, paused): the lease expires, the work stops,
        # and whichever runner takes it next writes with a higher token.
        assert leases.expire(LEASE) == 2
        await eventually(lambda: ran_with(3))
        await asyncio.sleep(0.2)
    history = await rows(pool)
    assert {r for r, t in history if t == 2} == {first_holder}
    assert len({r for r, t in history if t == 3}) == 1
    tokens = [t for _, t in history]
    assert tokens == sorted(tokens)  # no write with an older token after a newer one
    assert ticks.overlaps == 0
    lost = REGISTRY.get_sample_value("marquee_jobs_lease_lost_total", {"lease": LEASE})
    assert lost == lost_before + 1

    # The old holder's late write (say it was paused mid-transaction) is refused.
    async with pool.acquire() as conn:
        with pytest.raises(StaleToken, match="token 2 refused: token 3 seen"):
            async with conn.transaction():
                await fenced_write(conn, "tick", 2)


async def test_fenced_write_admits_equal_and_higher_tokens_only_in_a_transaction(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        for token in (5, 5, 9):
            async with conn.transaction():
                await fenced_write(conn, "report", token)
        with pytest.raises(StaleToken):
            async with conn.transaction():
                await fenced_write(conn, "report", 8)
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await fenced_write(conn, "report", 10)
        assert await conn.fetchval("SELECT token FROM marquee_fencing") == 9


async def test_stopping_a_runner_mid_work_leaves_no_task(pool: asyncpg.Pool) -> None:
    started = asyncio.Event()

    async def slow(lease: Lease) -> None:
        started.set()
        await asyncio.sleep(30)

    before = asyncio.all_tasks()
    task = asyncio.create_task(
        PeriodicRunner(MemoryLeases(), [PeriodicJob("slow", slow, interval=1)]).run()
    )
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    await asyncio.wait([task])
    assert asyncio.all_tasks() - before == set()
