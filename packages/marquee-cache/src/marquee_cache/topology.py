"""Which Redis node serves a key, and each node's tracking connection and breaker.

Single node: one `Node`, every key routes to it. Cluster: one `Node` per master,
and a slot map (slot -> master name) copied from redis-py's `RedisCluster` after
it asked the cluster (CLUSTER SLOTS). The copy is ours: redis-py patches its own
map on every MOVED it follows, and the cache relies on a stable map: an L1 entry
of slot s was filled from the tracking connection of the master that owns s *in
our map*, so when an owner changes (`on_moved`) those entries are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from marquee_cache.breaker import CircuitBreaker
from marquee_cache.config import CacheConfig
from marquee_cache.errors import CacheUnavailable
from marquee_cache.tracking import Tracker


@dataclasses.dataclass(eq=False)
class Node:
    name: str
    """host:port, as redis-py names cluster nodes."""
    tracker: Tracker
    breaker: CircuitBreaker


TrackerFactory = Callable[[str, CacheConfig], Tracker]
"""Builds a node's tracker (wired to the cache) from its name and a config aimed at it."""


def slot_of(key: str) -> int:
    """The cluster slot of `key` (CRC16 of its hash tag `{...}` if it has one)."""
    return key_slot(key.encode("utf-8", "surrogateescape"))


class Topology:
    def __init__(
        self,
        config: CacheConfig,
        make_tracker: TrackerFactory,
        on_moved: Callable[[set[int]], None],
    ) -> None:
        self._config = config
        self._make_tracker = make_tracker
        self._on_moved = on_moved
        self.cluster = config.cluster
        self.nodes: dict[str, Node] = {}
        # Cluster only: slot -> master name; empty until the first refresh.
        self._owners: list[str | None] = []
        self._discovered = False
        self.known = asyncio.Event()
        """Set once every slot has an owner (at once for a single node)."""
        # Calls that name no key (PING, ...) on a cluster; the node's own on a single node.
        self.default_breaker = self._breaker()
        if not self.cluster:
            name = f"{config.host}:{config.port}"
            self.nodes[name] = Node(name, make_tracker(name, config), self.default_breaker)
            self.known.set()

    def _breaker(self) -> CircuitBreaker:
        return CircuitBreaker(
            self._config.breaker_failure_threshold, self._config.breaker_reset_timeout
        )

    def node_for(self, key: str) -> Node:
        if not self.cluster:
            return next(iter(self.nodes.values()))
        owner = self._owners[slot_of(key)] if self._owners else None
        node = self.nodes.get(owner) if owner is not None else None
        if node is None:
            raise CacheUnavailable(f"no known Redis cluster node serves key {key!r} yet")
        return node

    def owner_name(self, key: str) -> str | None:
        if not self.cluster:
            return next(iter(self.nodes))
        return self._owners[slot_of(key)] if self._owners else None

    def group(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Keys by the name of the node that serves them (one round trip per node)."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(self.node_for(key).name, []).append(key)
        return groups

    def breaker_for(self, key: str | None) -> CircuitBreaker:
        if key is None:
            return self.default_breaker
        try:
            return self.node_for(key).breaker
        except CacheUnavailable:
            return self.default_breaker

    def start(self) -> None:
        for node in self.nodes.values():
            node.tracker.start()

    async def close(self) -> None:
        await asyncio.gather(*(node.tracker.close() for node in self.nodes.values()))

    async def wait_up(self) -> None:
        """Until the slot map is known and every node's tracking is up."""
        await self.known.wait()
        await asyncio.gather(*(node.tracker.wait_up() for node in list(self.nodes.values())))

    async def refresh(self, client: aioredis.RedisCluster) -> None:
        """Re-read the slot map; start trackers for new masters, stop those of gone ones."""
        if self._discovered:
            await client.nodes_manager.initialize()
        else:
            await client.initialize()  # the client's own first discovery, done once
            self._discovered = True
        owners: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        addresses: dict[str, tuple[str, int]] = {}
        for slot, serving in client.nodes_manager.slots_cache.items():
            primary = serving[0]
            owners[slot] = primary.name
            addresses[primary.name] = (primary.host, int(primary.port))
        moved = {slot for slot, owner in enumerate(owners) if owner != self._owner(slot)}
        gone = [node for name, node in self.nodes.items() if name not in addresses]
        # Swap, drop and add without an await in between: no read routes on a
        # half-updated map, and no hit serves an entry of a moved slot after this.
        self._owners = owners
        if moved:
            self._on_moved(moved)
        for node in gone:
            del self.nodes[node.name]
        for name, (host, port) in addresses.items():
            if name not in self.nodes:
                aimed = dataclasses.replace(self._config, host=host, port=port)
                node = Node(name, self._make_tracker(name, aimed), self._breaker())
                self.nodes[name] = node
                node.tracker.start()
        if all(owner is not None for owner in owners):
            self.known.set()
        for node in gone:
            with contextlib.suppress(Exception):
                await node.tracker.close()

    def _owner(self, slot: int) -> str | None:
        return self._owners[slot] if self._owners else None
