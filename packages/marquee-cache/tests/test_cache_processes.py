"""Two cache instances in two OS processes plus an outside writer (C-1, C-2)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from time import monotonic

import pytest
import redis.asyncio as aioredis

CHILD = Path(__file__).with_name("cache_child_process.py")


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.values: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()
        self.invalidations: asyncio.Queue[tuple[float, list[str]]] = asyncio.Queue()

    async def pump(self) -> None:
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode().strip():
            kind, a, b = ([*line.split(" ", 2), "", ""])[:3]
            if kind == "val":
                await self.values.put((a, None if b == "-" else bytes.fromhex(b)))
            elif kind == "inv":
                await self.invalidations.put((float(a), b.split(" ")))

    async def ask(self, op: str, key: str) -> bytes | None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{op} {key}\n".encode())
        async with asyncio.timeout(5):
            got_key, value = await self.values.get()
        assert got_key == key
        return value

    async def invalidated(self, key: str, since: float) -> float:
        async with asyncio.timeout(5):
            while True:
                at, keys = await self.invalidations.get()
                if at >= since and (key in keys or keys == ["*"]):
                    return at


@pytest.fixture
async def children(redis_url: str) -> AsyncIterator[list[Child]]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), redis_url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]  # fmt: skip
    kids = [Child(p) for p in procs]
    for p in procs:
        assert p.stdout is not None
        async with asyncio.timeout(30):
            assert (await p.stdout.readline()).strip() == b"ready"
    pumps = [asyncio.create_task(k.pump()) for k in kids]
    yield kids
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        async with asyncio.timeout(10):
            await p.wait()
    await asyncio.gather(*pumps)


async def test_two_processes_never_serve_stale_after_the_push(
    children: list[Child], writer: aioredis.Redis, ns: str
) -> None:
    key = ns + "shared"
    delays: list[float] = []
    await writer.set(key, b"v0")
    for i in range(1, 101):
        for child in children:
            await child.ask("get", key)
            assert await child.ask("peek", key) is not None, "held in that process's L1"
        sent = monotonic()
        await writer.set(key, f"v{i}")
        for child in children:
            delays.append(await child.invalidated(key, sent) - sent)
        for child in children:
            # The push has been applied in that process: the old value is gone.
            assert await child.ask("peek", key) is None
            assert await child.ask("get", key) == f"v{i}".encode()
    delays.sort()
    p50, p99 = delays[len(delays) // 2] * 1e3, delays[int(len(delays) * 0.99)] * 1e3
    print(f"\ninvalidation delay across processes (write sent -> push applied in the other "
          f"process): p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(delays)}")  # fmt: skip
    # Every invalidation reached every process (the checks above); how fast is a
    # benchmark figure, not a bound a loaded machine can be held to.
    assert delays
