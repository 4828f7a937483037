"""The cache on a real 3-master Redis Cluster (C-8): one tracking connection per
master, reads routed by slot, per-master fault isolation, hash-tagged deletes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

from marquee_cache import Cache, CacheUnavailable, RateLimiter
from marquee_cache_support import FAST, SLACK, CacheFactory, until
from marquee_localservers import RedisClusterServer


@pytest.fixture
async def outside(redis_cluster_url: str) -> AsyncIterator[aioredis.RedisCluster]:
    """A cluster client that knows nothing of any cache."""
    client = aioredis.RedisCluster.from_url(redis_cluster_url)
    await client.initialize()
    yield client
    await client.aclose()


async def cluster_cache(make: CacheFactory, url: str, **overrides: Any) -> Cache:
    cache = await make(url, cluster=True, **overrides)
    assert cache.health().status == "ok", cache.health()
    return cache


def master_of(client: aioredis.RedisCluster, key: str) -> ClusterNode:
    node = client.get_node_from_key(key)
    assert node is not None
    return node


def key_per_master(client: aioredis.RedisCluster, prefix: str) -> dict[str, str]:
    """master name -> a key (without a hash tag) that master serves."""
    keys: dict[str, str] = {}
    i = 0
    while len(keys) < len(client.get_primaries()):
        key = f"{prefix}{i}"
        keys.setdefault(master_of(client, key).name, key)
        i += 1
    return keys


async def test_tracked_reads_on_every_master_are_invalidated(
    cache_factory: CacheFactory, redis_cluster_url: str, outside: aioredis.RedisCluster, ns: str
) -> None:
    cache = await cluster_cache(cache_factory, redis_cluster_url)
    keys = key_per_master(outside, ns)
    assert sorted(cache._topology.nodes) == sorted(keys), "one tracking connection per master"
    for key in keys.values():
        await outside.set(key, b"old")
    await cache.sync()
    for key in keys.values():
        assert await cache.get(key) == b"old"
        assert cache.peek(key) == b"old", "read under its master's tracking fills L1"
        await outside.set(key, b"new")
    # Each master pushes its own invalidation on its own connection.
    await until(lambda: all(cache.peek(k) is False for k in keys.values()), timeout=2)
    assert await cache.get_many(keys.values()) == dict.fromkeys(keys.values(), b"new")


async def test_get_many_spans_slots_and_masters(
    cache_factory: CacheFactory, redis_cluster_url: str, outside: aioredis.RedisCluster, ns: str
) -> None:
    cache = await cluster_cache(cache_factory, redis_cluster_url)
    keys = [f"{ns}m{i}" for i in range(60)]
    assert len({master_of(outside, k).name for k in keys}) == 3
    await outside.mset_nonatomic({k: k.encode() for k in keys[:40]})
    expected = {k: (k.encode() if i < 40 else None) for i, k in enumerate(keys)}
    assert await cache.get_many(keys) == expected
    assert all(cache.peek(k) == v for k, v in expected.items()), "hits and misses cached"
    await outside.set(keys[50], b"created")  # a cached miss is invalidated too
    await cache.sync()
    assert (await cache.get_many(keys))[keys[50]] == b"created"


async def test_delete_hash_tagged_and_across_slots(
    cache_factory: CacheFactory, redis_cluster_url: str, outside: aioredis.RedisCluster, ns: str
) -> None:
    cache = await cluster_cache(cache_factory, redis_cluster_url)
    tagged = [f"{{{ns}user:1}}:profile", f"{{{ns}user:1}}:settings"]
    assert len({outside.keyslot(k) for k in tagged}) == 1, "a hash tag pins one slot"
    spread = list(key_per_master(outside, ns + "d").values())
    for key in [*tagged, *spread]:
        await cache.set(key, b"v")
        assert await cache.get(key) == b"v"
    assert await cache.delete(*tagged) == 2
    assert await cache.delete(*spread, ns + "absent") == 3, "keys on every master"
    for key in [*tagged, *spread]:
        assert await outside.exists(key) == 0
        assert await cache.get(key) is None


async def test_delete_prefix_scans_every_master(
    cache_factory: CacheFactory, redis_cluster_url: str, outside: aioredis.RedisCluster, ns: str
) -> None:
    cache = await cluster_cache(cache_factory, redis_cluster_url)
    doomed = [f"{ns}gone:{i}" for i in range(90)]
    await outside.mset_nonatomic({k: b"x" for k in [*doomed, ns + "kept"]})
    assert await cache.get_many(doomed[:10]) == dict.fromkeys(doomed[:10], b"x")
    assert await cache.delete_prefix(ns + "gone:", batch=10) == 90
    assert all(cache.peek(k) is False for k in doomed[:10]), "L1 cleared too"
    assert await cache.get_many(doomed) == dict.fromkeys(doomed)
    assert await cache.get(ns + "kept") == b"x"


async def test_rate_limiter_on_the_cluster(
    cache_factory: CacheFactory, redis_cluster_url: str, ns: str
) -> None:
    # A generous deadline: this is about atomicity across masters, not a slow Redis
    # (a starved process's timeouts are refused, which would read as a lost slot).
    caches = [
        await cluster_cache(cache_factory, redis_cluster_url, command_timeout=10) for _ in range(2)
    ]
    limiters = [RateLimiter(cache.redis) for cache in caches]
    subjects = [f"{ns}login:{i}" for i in range(6)]  # several slots, several masters
    decisions = await asyncio.gather(
        *(limiters[i % 2].hit(subjects[i % 6], limit=5, window=60) for i in range(120))
    )
    for i, subject in enumerate(subjects):
        mine = decisions[i::6]
        assert sum(d.allowed for d in mine) == 5, subject
    assert all(d.source == "redis" for d in decisions)


async def test_a_master_killed_and_restarted(
    cache_factory: CacheFactory, redis_cluster_factory: Callable[..., RedisClusterServer]
) -> None:
    cluster = redis_cluster_factory()  # no persistence: a restart comes back empty
    cache = await cluster_cache(cache_factory, cluster.url, **FAST)
    async with aioredis.RedisCluster.from_url(cluster.url) as outside:
        await outside.initialize()
        keys = key_per_master(outside, "k")
        await outside.mset_nonatomic(dict.fromkeys(keys.values(), b"before"))
    victim = cluster.nodes[1]
    dead_key = keys[f"{victim.host}:{victim.port}"]
    live_keys = [k for k in keys.values() if k != dead_key]
    assert await cache.get_many(keys.values()) == dict.fromkeys(keys.values(), b"before")

    victim.kill()
    await until(lambda: not cache.health().tracking)
    assert cache.peek(dead_key) is False, "its master's L1 entries are dropped"
    assert all(cache.peek(k) == b"before" for k in live_keys), "other masters' entries stay"
    for _ in range(4):  # until its breaker opens
        started = monotonic()
        with pytest.raises(CacheUnavailable):
            await cache.get(dead_key)
        assert monotonic() - started < FAST["command_timeout"] + SLACK, "bounded"
    # Fails fast: refused by its open breaker, without trying Redis (no timing bound).
    with pytest.raises(CacheUnavailable, match="circuit breaker is open"):
        await cache.get(dead_key)
    assert cache.health().status == "degraded"
    await cache.set(live_keys[0], b"still")
    assert await cache.get(live_keys[0]) == b"still", "the other masters keep serving"

    victim.start()
    restarted = monotonic()
    async with asyncio.timeout(15):
        while True:  # traffic is what closes the breaker again (a half-open probe)
            try:
                value = await cache.get(dead_key)
                break
            except CacheUnavailable:
                await asyncio.sleep(0.05)
    assert value is None, "L1 did not outlive the restart"
    await until(lambda: cache.health().status == "ok")
    print(f"\nrecovered {monotonic() - restarted:.2f} s after the master restarted")
    await cache.set(dead_key, b"after")
    # Order the write's own invalidation before the read, or the fill is rightly refused.
    await cache.sync()
    assert await cache.get(dead_key) == b"after"
    assert cache.peek(dead_key) == b"after", "L1 in use again on the restarted master"


async def test_a_dead_default_node_does_not_stop_the_other_masters(
    cache_factory: CacheFactory, redis_cluster_factory: Callable[..., RedisClusterServer]
) -> None:
    """redis-py re-read its command table from its default node on every slot-map
    re-read; with that master dead, every command on every master failed (seen in CI)."""
    cluster = redis_cluster_factory()
    cache = await cluster_cache(cache_factory, cluster.url, **FAST)
    client = cache._redis.client
    assert isinstance(client, aioredis.RedisCluster)
    default = client.get_default_node()
    victim = next(node for node in cluster.nodes if node.port == default.port)
    live = next(k for k in key_per_master(client, "d").values() if master_of(client, k) != default)
    victim.kill()
    client._initialize = True  # what any connection error leaves behind
    await cache.set(live, b"still")
    assert await cache.get(live) == b"still"


async def test_keyed_commands_route_by_slot_after_a_failed_slot_map_reread(
    cache_factory: CacheFactory, redis_cluster_factory: Callable[..., RedisClusterServer]
) -> None:
    """A re-read that fails or is cancelled leaves redis-py without a default node;
    it then sent SET to a random master, here often the dead one (seen under load)."""
    cluster = redis_cluster_factory()
    cache = await cluster_cache(cache_factory, cluster.url, **FAST)
    client = cache._redis.client
    assert isinstance(client, aioredis.RedisCluster)
    victim = cluster.nodes[1]
    keys = key_per_master(client, "r")
    live = [k for name, k in keys.items() if name != f"{victim.host}:{victim.port}"]
    victim.kill()
    for i in range(20):
        client._initialize = True  # what a failed or cancelled re-read leaves behind
        client.nodes_manager.default_node = None  # type: ignore[assignment]  # as redis-py does
        await cache.set(live[i % 2], f"v{i}")
    assert await cache.get(live[1]) == b"v19"


async def test_a_burst_beyond_the_connection_limit_waits_instead_of_failing(
    cache_factory: CacheFactory, redis_cluster_url: str, ns: str
) -> None:
    """redis-py's cluster pool raises MaxConnectionsError past its size instead of waiting."""
    cache = await cluster_cache(cache_factory, redis_cluster_url, max_connections=2)
    keys = [f"{ns}burst:{i}" for i in range(60)]
    await asyncio.gather(*(cache.set(key, key) for key in keys))  # writes use the pools
    assert await cache.get_many(keys) == {key: key.encode() for key in keys}
    assert cache.health().status == "ok"


async def test_a_slot_moved_to_another_master_is_followed(
    cache_factory: CacheFactory, redis_cluster_factory: Callable[..., RedisClusterServer]
) -> None:
    cluster = redis_cluster_factory(size=2)
    cache = await cluster_cache(cache_factory, cluster.url, **FAST)
    key = "moving"
    async with aioredis.RedisCluster.from_url(cluster.url) as outside:
        await outside.initialize()
        await outside.set(key, b"v1")
        assert await cache.get(key) == b"v1"
        assert cache.peek(key) == b"v1"
        slot = outside.keyslot(key)
        source = master_of(outside, key)
        (target,) = [n for n in outside.get_primaries() if n.name != source.name]
        ids = {
            n.name: await outside.execute_command("CLUSTER", "MYID", target_nodes=n)
            for n in (source, target)
        }
        # The resharding steps redis-cli performs, for one slot.
        run = outside.execute_command
        await run("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.name], target_nodes=target)
        await run("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.name], target_nodes=source)
        await run(
            "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key, target_nodes=source
        )
        for node in (source, target):
            await run("CLUSTER", "SETSLOT", slot, "NODE", ids[target.name], target_nodes=node)

        # The old master's tracking saw the key leave; the read gets MOVED and is
        # answered through the cluster client while the slot map is re-read.
        await until(lambda: cache.peek(key) is False, timeout=2)
        assert await cache.get(key) == b"v1"
        await until(lambda: cache._topology.owner_name(key) == target.name)
        assert await cache.get(key) == b"v1"
        assert cache.peek(key) == b"v1", "tracked on the new master"
        await outside.set(key, b"v2")
        await until(lambda: cache.peek(key) is False, timeout=2)
        assert await cache.get(key) == b"v2"
