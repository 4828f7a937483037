"""Server instructions per call, counted by valgrind's callgrind: a figure that load can't move.

Timed figures on this machine move by a third between runs as its speed
changes; instruction counts repeat to within ~0.1%. Each server runs under
`valgrind --tool=callgrind` (all its threads: Python, grpc's poller and the
C-core threads). After a warm-up the counters are zeroed, N calls are made
from 16 concurrent tasks and the counters dumped; then the server idles for
as long as the calls took and is dumped again, so background work (timers,
heartbeats, which run ~50x as often per call under valgrind) is subtracted.

Peer: a bare grpc.aio server with only the health service (plain_server.py).
Marquee: `python -m marquee_search` and `python -m marquee_cache_gateway`
(with a private Redis), each called on grpc.health.v1 Check, and the
gateway on Get of a key held in its L1.

`.venv/bin/python bench/service_stack/instructions.py` (`BENCH_CALLS`, default 1600)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import redis
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import Row, print_results, wait_serving
from marquee.cache.v1 import cache_pb2, cache_pb2_grpc
from marquee_localservers import RedisServer, free_port

CALLS = int(os.environ.get("BENCH_CALLS", "1600"))
TASKS = 16
WARM_UP = 320
HERE = Path(__file__).resolve().parent

Call = Callable[[grpc.aio.Channel], Callable[[], Awaitable[object]]]


def check(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    stub, request = health_pb2_grpc.HealthStub(channel), health_pb2.HealthCheckRequest()
    return lambda: stub.Check(request)


def cache_get(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    stub, request = cache_pb2_grpc.CacheServiceStub(channel), cache_pb2.GetRequest(key="hot")
    return lambda: stub.Get(request)


class Callgrind:
    """One server process under callgrind, zeroed and dumped on request."""

    def __init__(self, argv: list[str], env: dict[str, str], out: Path) -> None:
        self._out = out
        self._parts = 0
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def zero(self) -> None:
        self._control("-z")

    def dump(self) -> int:
        """Instructions since the last zero or dump."""
        self._control("-d")
        self._parts += 1
        dumped = Path(f"{self._out}.{self._parts}")
        deadline = time.monotonic() + 60
        while not dumped.exists() or "totals:" not in dumped.read_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"callgrind wrote no {dumped}")
            time.sleep(0.2)
        for line in dumped.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
        raise ValueError(f"no summary in {dumped}")

    def _control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.proc.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


async def run_calls(call: Callable[[], Awaitable[object]], count: int) -> None:
    async def task() -> None:
        for _ in range(count // TASKS):
            await call()

    await asyncio.gather(*(task() for _ in range(TASKS)))


async def instructions_per_call(server: Callgrind, call: Callable[[], Awaitable[object]]) -> float:
    """Instructions per `call`, with the idle background work of the same span subtracted."""
    await run_calls(call, WARM_UP)
    server.zero()
    started = time.monotonic()
    await run_calls(call, CALLS)
    busy = server.dump()
    await asyncio.sleep(time.monotonic() - started)
    idle = server.dump()
    return (busy - idle) / (CALLS // TASKS * TASKS)


async def per_call(server: Callgrind, address: str, make_call: Call) -> float:
    """Instructions per call of `make_call`'s RPC on a channel of its own."""
    async with grpc.aio.insecure_channel(address) as channel:
        return await instructions_per_call(server, make_call(channel))


@contextmanager
def started(argv: list[str], env: dict[str, str], tmp: Path, name: str) -> Iterator[Callgrind]:
    server = Callgrind(argv, env, tmp / f"{name}.callgrind")
    try:
        yield server
    finally:
        server.stop()


async def measure(
    name: str, args: list[str], env: dict[str, str], calls: dict[str, Call], tmp: Path
) -> dict[str, float]:
    """Per-call instructions of each of `calls` on one server; `name` is its settings prefix."""
    port = free_port()
    prefix = f"MARQUEE_{name.upper()}_"
    settings = {f"{prefix}GRPC_PORT": str(port), f"{prefix}METRICS_PORT": "-1"}
    settings[f"{prefix}LOG_LEVEL"] = "WARNING"
    argv = [sys.executable, *args] + ([str(port)] if name == "bare" else [])
    with started(argv, {**os.environ, **settings, **env}, tmp, name) as server:
        address = f"127.0.0.1:{port}"
        await wait_serving(address, timeout=300)
        return {call: await per_call(server, address, make) for call, make in calls.items()}


async def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = RedisServer(tmp, persistent=False)
        redis_server.start()
        try:
            with redis.Redis.from_url(redis_server.url) as plain:
                plain.set("hot", b"x" * 100)
            plain_server = [str(HERE / "plain_server.py")]
            bare = await measure("bare", plain_server, {}, {"Check": check}, tmp)
            search = await measure("search", ["-m", "marquee_search"], {}, {"Check": check}, tmp)
            gateway = await measure(
                "cache",
                ["-m", "marquee_cache_gateway"],
                {"MARQUEE_CACHE_REDIS_URL": redis_server.url},
                {"Check": check, "Get": cache_get},
                tmp,
            )
        finally:
            redis_server.stop()
    unit = "server instructions/call vs bare grpc.aio Check"
    print_results(
        "service_stack_instructions",
        "bare grpc.aio",
        [
            Row("search service Check", search["Check"], bare["Check"], unit),
            Row("cache gateway Check", gateway["Check"], bare["Check"], unit),
            Row("cache gateway Get (L1 hit)", gateway["Get"], bare["Check"], unit),
        ],
        notes={"calls": CALLS},
    )


if __name__ == "__main__":
    uvloop.run(main())
