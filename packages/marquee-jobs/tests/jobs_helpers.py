"""Running a worker for the length of a block, and waiting on conditions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


@asynccontextmanager
async def running(work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait([task])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def job_row(pool: asyncpg.Pool, job_id: int) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM marquee_jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def state_is(pool: asyncpg.Pool, job_id: int, state: str) -> bool:
    return bool((await job_row(pool, job_id))["state"] == state)


async def count_in_state(pool: asyncpg.Pool, state: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM marquee_jobs WHERE state = $1", state))
