"""Unique keys: one job per key inside the window, a new one after it (J-2)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from marquee_jobs import JobQueue


async def count_jobs(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM marquee_jobs"))


async def test_a_duplicate_inside_the_window_yields_one_job(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    first = await queue.enqueue("notify", {"user": 7}, unique_key="user:7", unique_for=60)
    second = await queue.enqueue("notify", {"user": 7}, unique_key="user:7", unique_for=60)
    assert first is not None
    assert second is None
    # The key is per kind: another kind may use the same key.
    assert await queue.enqueue("audit", unique_key="user:7", unique_for=60) is not None
    assert await count_jobs(pool) == 2


async def test_concurrent_duplicates_yield_one_job(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    ids = await asyncio.gather(
        *(queue.enqueue("notify", unique_key="burst", unique_for=60) for _ in range(20))
    )
    assert len([i for i in ids if i is not None]) == 1
    assert await count_jobs(pool) == 1


async def test_a_duplicate_after_the_window_yields_a_second_job(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)
    assert await queue.enqueue("notify", unique_key="user:8", unique_for=0.3) is not None
    await asyncio.sleep(0.4)
    assert await queue.enqueue("notify", unique_key="user:8", unique_for=0.3) is not None
    assert await count_jobs(pool) == 2


async def test_enqueue_joins_the_callers_transaction(pool: asyncpg.Pool) -> None:
    queue = JobQueue(pool)

    async def write_then_fail() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await queue.enqueue("notify", conn=conn)
            raise RuntimeError("the caller's write failed")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert await count_jobs(pool) == 0


async def test_a_key_needs_a_window() -> None:
    with pytest.raises(ValueError, match="go together"):
        await JobQueue(None).enqueue("notify", unique_key="k")  # type: ignore[arg-type]
