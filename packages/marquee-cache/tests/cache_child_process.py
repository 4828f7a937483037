"""A cache instance in its own OS process, driven by lines on stdin (see test_cache_processes).

stdin:  `get KEY` -> stdout `val KEY HEX` (or `val KEY -` when absent), `peek KEY` likewise
stdout, unprompted: `inv AT KEY...` for each invalidation, AT = time.monotonic()
(system-wide on Linux, so the parent can compare it with its own clock).
"""

from __future__ import annotations

import asyncio
import sys

from marquee_cache import Cache


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(url: str) -> None:
    cache = await Cache.connect(url)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def forward_invalidations() -> None:
        async for event in cache.invalidations():
            emit(f"inv {event.at!r} {'*' if event.flush else ' '.join(event.keys)}")

    forwarder = asyncio.create_task(forward_invalidations())
    emit("ready")
    while line := (await reader.readline()).decode().strip():
        op, key = line.split(" ", 1)
        if op == "get":
            value = await cache.get(key)
        else:
            peeked = cache.peek(key)
            value = None if peeked is False else peeked  # type: ignore[assignment]
        emit(f"val {key} {value.hex() if isinstance(value, bytes) else '-'}")
    forwarder.cancel()
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
