"""Every Redis call goes through here: a deadline, the circuit breaker, typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, RedisClusterException, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.typing import EncodableT

from marquee_cache.breaker import CircuitBreaker
from marquee_cache.config import CacheConfig
from marquee_cache.errors import CacheCommandError, CacheUnavailable
from marquee_cache.tracking import TrackingUnavailable

T = TypeVar("T")

Client = aioredis.Redis | aioredis.RedisCluster
BreakerFor = Callable[[str | None], CircuitBreaker]
"""The breaker guarding calls about a key (None: calls that name no key)."""

# Checked before ResponseError: these are "the cluster cannot answer now"
# (CLUSTERDOWN, TRYAGAIN while a slot moves, no node reachable), not a bad request.
_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
)


class GuardedRedis:
    def __init__(self, config: CacheConfig, breaker_for: BreakerFor) -> None:
        self.breaker_for = breaker_for
        self.answering: Callable[[str | None], bool] = lambda _key: False
        """Is the node serving `key` known to be answering (its tracking connection
        is up)? Set by the Cache; the rate limiter asks it before deciding locally."""
        self.timeout = config.command_timeout
        self.client: Client = _cluster_client(config) if config.cluster else _client(config)
        # redis-py's cluster pools do not wait for a free connection as the single-node
        # BlockingConnectionPool does: past max_connections to one node they raise
        # MaxConnectionsError, which a burst would turn into failures and an open
        # breaker. Calls through `run` (the ones that use those pools; tracked reads
        # do not) queue here instead, within their deadline; a call holds at most
        # one connection per node, so no node's pool runs out.
        self._in_flight = asyncio.Semaphore(config.max_connections) if config.cluster else None

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker of calls that name no key (on a single node: the only one)."""
        return self.breaker_for(None)

    async def run(
        self,
        op: Callable[[Client], Awaitable[T]],
        *,
        key: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> T:
        """Run `op(client)` under the deadline and the breaker of `key`'s node
        (or `breaker`); on a cluster, a call naming no key has a breaker of its own."""
        in_flight = self._in_flight
        if in_flight is None:
            return await self.guard(lambda: op(self.client), breaker or self.breaker_for(key))

        async def queued() -> T:
            async with in_flight:  # waited for under guard's deadline
                return await op(self.client)

        return await self.guard(queued, breaker or self.breaker_for(key))

    async def guard(
        self, make: Callable[[], Awaitable[T]], breaker: CircuitBreaker | None = None
    ) -> T:
        breaker = breaker or self.breaker_for(None)
        if not breaker.allow():
            raise CacheUnavailable("Redis circuit breaker is open")
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except TrackingUnavailable:
            # Says the tracking connection is down, not Redis: the caller falls back.
            breaker.abandon()
            raise
        except _UNAVAILABLE as exc:
            breaker.record_failure()
            raise CacheUnavailable(f"Redis unavailable: {exc!r}") from exc
        except ResponseError as exc:
            breaker.record_success()
            raise CacheCommandError(str(exc)) from exc
        except BaseException:
            breaker.abandon()
            raise
        breaker.record_success()
        return result

    async def aclose(self) -> None:
        await self.client.aclose()


def _client(config: CacheConfig) -> aioredis.Redis:
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
    return aioredis.Redis(connection_pool=pool)


def _cluster_client(config: CacheConfig) -> aioredis.RedisCluster:
    if config.db:
        raise ValueError("a Redis Cluster has only database 0")
    client = _RedisCluster(
        host=config.host,
        port=config.port,
        username=config.username,
        password=config.password,
        max_connections=config.max_connections,  # per node
        socket_timeout=config.command_timeout,
        socket_connect_timeout=config.connect_timeout,
        # redis-py follows MOVED/ASK and re-reads the slot map itself; one retry
        # covers a connection that died while idle, the deadline bounds the rest.
        retry=AsyncRetry(NoBackoff(), 1),
    )
    client.commands_parser = _CommandTableReadOnce()
    return client


class _RedisCluster(aioredis.RedisCluster):
    """redis-py's cluster client, routing by slot even right after a failed re-read.

    redis-py 8 decides how to route a command before it re-reads the slot map.
    A re-read that failed or was cancelled (our deadline) leaves no default
    node behind, and a command without a known routing flag, SET for one, is
    then treated as keyless and sent to a random master: a dead one fails it
    even though its own master is up. Re-reading first keeps slot routing.
    """

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        await self.initialize()  # returns at once unless a re-read is due
        return await super().execute_command(*args, **kwargs)


class _CommandTableReadOnce(AsyncCommandsParser):
    """redis-py's command table, read from the cluster once instead of on every re-read
    of the slot map.

    redis-py 8 sends COMMAND to its default node (the first master it lists) each
    time it re-reads the slot map, which it does after any connection error. With
    a master dead and no replica to promote, that node can be the dead one: then
    every command, for every master, fails until it comes back. The table does not
    change while the client lives, so later calls only follow the new default node.
    """

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if not self.commands:
            await super().initialize(node)
        elif node is not None:
            self.node = node
