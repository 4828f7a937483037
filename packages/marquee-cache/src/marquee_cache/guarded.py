"""Every Redis call goes through here: a deadline, the circuit breaker, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from marquee_cache.breaker import CircuitBreaker
from marquee_cache.config import CacheConfig
from marquee_cache.errors import CacheCommandError, CacheUnavailable
from marquee_cache.tracking import TrackingUnavailable

T = TypeVar("T")

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class GuardedRedis:
    def __init__(self, config: CacheConfig, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.timeout = config.command_timeout
        pool = aioredis.BlockingConnectionPool(
            host=config.host,
            port=config.port,
            db=config.db,
            username=config.username,
            password=config.password,
            max_connections=config.max_connections,
            timeout=config.command_timeout,
            socket_timeout=config.command_timeout,
            socket_connect_timeout=config.connect_timeout,
            # One immediate retry, for a pooled connection that died while idle (e.g.
            # across a Redis restart); beyond that the deadline and the breaker decide.
            retry=Retry(NoBackoff(), 1),
        )
        self.client = aioredis.Redis(connection_pool=pool)

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run `op(client)` on the pooled client under the deadline and the breaker."""
        return await self.guard(lambda: op(self.client))

    async def guard(self, make: Callable[[], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            raise CacheUnavailable("Redis circuit breaker is open")
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except TrackingUnavailable:
            # Says the tracking connection is down, not Redis: the caller falls back.
            self.breaker.abandon()
            raise
        except ResponseError as exc:
            self.breaker.record_success()
            raise CacheCommandError(str(exc)) from exc
        except _UNAVAILABLE as exc:
            self.breaker.record_failure()
            raise CacheUnavailable(f"Redis unavailable: {exc!r}") from exc
        except BaseException:
            self.breaker.abandon()
            raise
        self.breaker.record_success()
        return result

    async def aclose(self) -> None:
        await self.client.aclose()
