"""Types and helpers shared by the cache tests, importable under a name unique across the repo."""

import asyncio
from collections.abc import Awaitable, Callable

from marquee_cache import Cache

CacheFactory = Callable[..., Awaitable[Cache]]

# Deadlines short enough that fault tests see a dead Redis within a fraction of a second.
FAST = {
    "command_timeout": 0.2,
    "connect_timeout": 0.2,
    "heartbeat_interval": 0.1,
    "heartbeat_timeout": 0.2,
    "reconnect_max_delay": 0.2,
    "breaker_reset_timeout": 0.3,
}
# What a "bounded" check allows beyond a deadline: it shows the call did not wait
# on a dead Redis, on a loaded machine too. How fast is a benchmark figure.
SLACK = 2.0


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
