"""The cache, next to its peers (issue 4, item 8), in one run against one private Redis.

(a) marquee-cache in process: a hot-key get (an L1 hit) and a get that misses L1
    (GET + PTTL on the tracking connection), each against redis-py asyncio GET
    straight to the same Redis.
(b) The gateway process (`python -m marquee_cache_gateway`): Get of a hot key at
    concurrency 1 and 64, against a no-op unary RPC on the same process and
    stack (grpc.health.v1 Check), the floor any unary call pays here.
(c) GetMany of 100 hot keys through the gateway in keys/s, against redis-py
    pipelines of 100 GETs straight to Redis, at the same concurrency.

Every figure is the same statistic on both sides: per round, each side is run
back to back (who goes first alternates in (b) and (c)), and the figure is the
median over BENCH_ROUNDS rounds, with the spread, and the ratio the median of
per-round ratios; so load from elsewhere on the machine hits both alike. The
client is this process, on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import redis.asyncio as aioredis
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (
    LoadLog,
    Row,
    Throughput,
    from_runs,
    measure_calls,
    print_results,
    wait_serving,
)
from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee_cache import Cache
from marquee_localservers import RedisServer, free_port
from marquee_localservers.spawning import child_argv

SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
HITS = 20_000
# Rounds of (a) are spread out a little: this machine has slow spells of a second
# or more, and a round should not fall into the same one as the next.
ROUND_PAUSE_S = 0.2
MISSES = 5_000
BATCH = 100
BATCH_CONCURRENCY = int(os.environ.get("BENCH_BATCH_CONCURRENCY", "4"))
VALUE = b"x" * 100


async def library_rows(url: str, load: LoadLog) -> list[Row]:
    """One statistic for both sides: per round, each side's mean cost over a block of
    gets, taken back to back; the figure is the median over ROUNDS rounds (and the
    ratio the median of per-round ratios)."""
    cache = await Cache.connect(url)
    plain = aioredis.Redis.from_url(url)
    try:
        await cache.set("hot", VALUE)
        assert await cache.get("hot") == VALUE
        get = cache.get
        cold = [f"cold:{i}" for i in range(MISSES * ROUNDS)]
        await plain.mset(dict.fromkeys(cold, VALUE))
        for _ in range(1000):  # warm-up: both code paths and connections
            await get("hot")
            await plain.get("hot")
        hit_s, miss_s, raw_s = [], [], []
        for r in range(ROUNDS):
            load.sample()
            keys = cold[r * MISSES : (r + 1) * MISSES]
            started = time.perf_counter()
            for _ in range(HITS):
                await get("hot")
            hit_s.append((time.perf_counter() - started) / HITS)
            started = time.perf_counter()
            for key in keys:
                await get(key)  # each one a first read: L1 miss, tracked GET + PTTL
            miss_s.append((time.perf_counter() - started) / MISSES)
            started = time.perf_counter()
            for key in keys:
                await plain.get(key)
            raw_s.append((time.perf_counter() - started) / MISSES)
            await asyncio.sleep(ROUND_PAUSE_S)
    finally:
        await plain.aclose()
        await cache.close()

    def per_second(costs: list[float]) -> list[float]:
        return [1 / c for c in costs]

    def in_ns(costs: list[float]) -> list[float]:
        return [c * 1e9 for c in costs]

    same_statistic = "per round: mean over a block of gets, back to back; median of rounds"
    return [
        from_runs(
            "(a) library hot-key get", per_second(hit_s), per_second(raw_s),
            "gets/s vs redis-py GET",
            recipe=f"{HITS:,} L1 hits vs {MISSES:,} redis-py GETs; {same_statistic}",
        ),
        from_runs("(a) L1 hit cost", in_ns(hit_s), in_ns(raw_s), "ns vs redis-py GET"),
        from_runs(
            "(a) library L1-miss get (tracked)", per_second(miss_s), per_second(raw_s),
            "gets/s vs redis-py GET",
            recipe=f"{MISSES:,} first reads (GET+PTTL) vs {MISSES:,} redis-py GETs; "
            f"{same_statistic}",
        ),
    ]  # fmt: skip


Call = Callable[[], Awaitable[object]]


async def alternate(
    ours: Call, peer: Call, concurrency: int, load: LoadLog
) -> tuple[list[Throughput], list[Throughput]]:
    """ROUNDS runs of each, back to back, after a short warm-up; who goes first alternates."""
    runs: tuple[list[Throughput], list[Throughput]] = ([], [])
    for call in (ours, peer):
        await measure_calls(call, concurrency=concurrency, seconds=0.3)
    for round_ in range(ROUNDS):
        load.sample()
        pairs = list(zip((ours, peer), runs, strict=True))
        for call, results in pairs if round_ % 2 == 0 else reversed(pairs):
            results.append(await measure_calls(call, concurrency=concurrency, seconds=SECONDS))
    return runs


def per_second(results: list[Throughput], scale: float = 1.0) -> list[float]:
    return [r.per_second * scale for r in results]


def p99(results: list[Throughput]) -> list[float]:
    return [r.p99_ms for r in results]


def max_gap(results: list[Throughput]) -> list[float]:
    return [r.max_gap_ms for r in results]


async def gateway_rows(address: str, url: str, load: LoadLog) -> list[Row]:
    keys = [f"many:{i}" for i in range(BATCH)]
    async with aioredis.Redis.from_url(url) as plain:
        await plain.mset(dict.fromkeys([*keys, "hot"], VALUE))
    rows: list[Row] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        get = cache_pb2.GetRequest(key="hot")
        check = health_pb2.HealthCheckRequest()
        assert (await stub.Get(get)).found
        assert (await stub.Get(get)).layer == cache_pb2.CACHE_LAYER_L1
        for concurrency in (1, 64):
            ours, floor = await alternate(
                lambda: stub.Get(get), lambda: health.Check(check), concurrency, load
            )
            rows.append(
                from_runs(f"(b) gateway Get calls/s @{concurrency}", per_second(ours),
                          per_second(floor), "calls/s vs no-op health Check")
            )  # fmt: skip
            rows.append(
                from_runs(f"(b) gateway Get p99 @{concurrency}", p99(ours), p99(floor),
                          "ms vs no-op health Check")
            )  # fmt: skip
            rows.append(
                from_runs(f"(b) longest gap with no reply @{concurrency}", max_gap(ours),
                          max_gap(floor), "ms vs no-op health Check")
            )  # fmt: skip

        many = cache_pb2.GetManyRequest(keys=keys)
        reply = await stub.GetMany(many)
        assert all(e.found for e in reply.entries)
        async with aioredis.Redis.from_url(url) as plain:

            async def pipelined() -> object:
                pipe = plain.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                return await pipe.execute()

            ours, peer = await alternate(
                lambda: stub.GetMany(many), pipelined, BATCH_CONCURRENCY, load
            )
        rows.append(
            from_runs(f"(c) GetMany x{BATCH} @{BATCH_CONCURRENCY}", per_second(ours, BATCH),
                      per_second(peer, BATCH), "keys/s vs redis-py pipelined GETs")
        )  # fmt: skip
    return rows


async def main() -> None:
    load = LoadLog()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        redis_server = RedisServer(Path(tmp), persistent=False)
        redis_server.start()
        port = free_port()
        env = {
            **os.environ,
            "MARQUEE_CACHE_GRPC_PORT": str(port),
            "MARQUEE_CACHE_METRICS_PORT": "-1",
            "MARQUEE_CACHE_REDIS_URL": redis_server.url,
            "MARQUEE_CACHE_LOG_LEVEL": "WARNING",
        }
        gateway = subprocess.Popen(
            child_argv([sys.executable, "-m", "marquee_cache_gateway"]), env=env
        )
        try:
            rows = await library_rows(redis_server.url, load)
            address = f"127.0.0.1:{port}"
            await wait_serving(address, "marquee.cache.v1.CacheService")
            rows += await gateway_rows(address, redis_server.url, load)
        finally:
            gateway.terminate()
            gateway.wait(timeout=15)
            redis_server.stop()
    load.sample()
    notes = {"rounds": ROUNDS, "seconds": SECONDS}
    print_results("cache", "redis-py / no-op RPC", rows, notes, load=load)


if __name__ == "__main__":
    uvloop.run(main())
