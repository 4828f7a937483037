"""`Cache`: the two-level cache (L1 in process, L2 Redis kept coherent by tracking).

Invariants, each relied on by the hit path, which checks nothing but the entry:
- L1 holds only values read on the tracking connection while it was up (C-1);
  untracked reads (tracking down) are answered but never cached.
- Losing tracking flushes L1 synchronously, before any other task runs (C-3).
- A fill is refused when its key was invalidated, or L1 reset, after the read
  was sent (fill_guard, C-11).
- An entry expires no later than the key does in Redis (PTTL read in the same
  pipeline, measured from when the read was sent: C-12).
- This process's own writes and deletes drop the local entry before and after the
  write, so a caller reads its own write without waiting for the push.

On a Redis Cluster each master has its own tracking connection and breaker
(topology.py); a key's tracked read goes to its slot's master, and losing one
master's tracking drops only the L1 entries of that master's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

from marquee_cache import metrics
from marquee_cache.breaker import BreakerState
from marquee_cache.config import CacheConfig
from marquee_cache.connection import ConnectionLost
from marquee_cache.errors import CacheCommandError, CacheUnavailable
from marquee_cache.events import Invalidation, InvalidationHub, InvalidationStream
from marquee_cache.fill_guard import FillGuard
from marquee_cache.flight import Flight, Layer, Lookup, still_valid
from marquee_cache.guarded import Client, GuardedRedis
from marquee_cache.l1 import L1
from marquee_cache.topology import Node, Topology, slot_of
from marquee_cache.tracking import Tracker, TrackingUnavailable

log = logging.getLogger(__name__)

_METRICS_FOLD_INTERVAL = 1.0
# A cluster's slot map is re-read at most this often (on MOVED/ASK, or while a
# node's tracking is down: its slots may have a new master).
_TOPOLOGY_REFRESH_INTERVAL = 0.5
# Replies to a tracked read that mean "ask the cluster client instead".
_REROUTE = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")


Loader = Callable[[str], Awaitable[bytes | None]]
"""The backend of record for a key: its value, or None if it has none."""


class _Rerouted(Exception):
    """A tracked read hit a redirection: the slot map is stale or a slot is moving."""


@dataclass(frozen=True, slots=True)
class Health:
    status: str
    """ok: tracking up, L1 in use; degraded: Redis answers but L1 is bypassed
    (tracking down; on a cluster also: some masters' breakers are open);
    unavailable: the breaker is not closed (every master's), reads fail fast."""
    tracking: bool
    breaker: BreakerState
    l1_entries: int
    tracking_connects: int
    last_error: str | None


class Cache:
    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self._l1 = L1(config.l1_max_entries)
        self._entries = self._l1.entries  # the hit path reads the dict directly
        self._guard = FillGuard()
        self._topology = Topology(config, self._make_tracker, self._on_slots_moved)
        self._redis = GuardedRedis(config, self._topology.breaker_for)
        self._redis.answering = self._answering
        self._refreshed_at = -math.inf
        self._refreshing: asyncio.Task[None] | None = None
        self._hub = InvalidationHub()
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Counted as a plain int on the hit path (a prometheus inc costs ~500 ns here)
        # and folded into the Counter off it.
        self._l1_hits = 0
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        cluster: bool = False,
        wait_for_tracking: float | None = 5.0,
        **overrides: Any,
    ) -> Cache:
        """Start a cache for `url`; by default wait until tracking is up (L1 in use).

        cluster=True: `url` is any node of a Redis Cluster (the rest are discovered).
        """
        cache = cls(CacheConfig.from_url(url, cluster=cluster, **overrides))
        await cache.start(wait_for_tracking)
        return cache

    async def start(self, wait_for_tracking: float | None = None) -> None:
        self._topology.start()
        if self._topology.cluster:
            self._refresh_topology()
        self._spawn(self._fold_metrics_forever())
        if wait_for_tracking:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_for_tracking):
                    await self._topology.wait_up()

    async def close(self) -> None:
        """Cancel and await every background task, close every connection."""
        if self._closed:
            return
        self._closed = True
        await self._topology.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._reset("closed")
        self._hub.close_all()
        self._fold_hits()
        await self._redis.aclose()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def health(self) -> Health:
        self._fold_hits()
        nodes = list(self._topology.nodes.values())
        states = [node.breaker.state for node in nodes]
        tracking = bool(nodes) and all(node.tracker.up for node in nodes)
        if not nodes or all(state is not BreakerState.CLOSED for state in states):
            status = "unavailable"
        elif tracking and all(state is BreakerState.CLOSED for state in states):
            status = "ok"
        else:
            status = "degraded"
        worst = max(states, key=_BREAKER_ORDER.index, default=BreakerState.OPEN)
        errors = [node.tracker.last_error for node in nodes if node.tracker.last_error]
        return Health(
            status=status,
            tracking=tracking,
            breaker=worst,
            l1_entries=len(self._l1),
            tracking_connects=sum(node.tracker.connects for node in nodes),
            last_error=errors[-1] if errors else None,
        )

    @property
    def redis(self) -> GuardedRedis:
        """The guarded pooled client, for companions such as the rate limiter."""
        return self._redis

    # -- reads ---------------------------------------------------------------------

    def peek(self, key: str) -> bytes | bool | None:
        """L1 only, synchronous: the value, None for a cached miss, False if L1 cannot answer."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > monotonic():
            self._l1_hits += 1
            return entry[0]
        return False

    async def get(
        self, key: str, *, loader: Loader | None = None, loader_ttl: float | None = None
    ) -> bytes | None:
        """The value, or None; `lookup` is the same read and also says which layer answered."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > monotonic():
            self._l1_hits += 1
            return entry[0]
        return (await self.lookup(key, loader=loader, loader_ttl=loader_ttl)).value

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        return {k: v.value for k, v in (await self.lookup_many(keys)).items()}

    async def lookup(
        self, key: str, *, loader: Loader | None = None, loader_ttl: float | None = None
    ) -> Lookup:
        """L1, then Redis; with a `loader` (the backend of record), also the loader.

        The loader is asked when Redis has no value (what it returns is stored in
        Redis with `loader_ttl`, SET NX: a value written meanwhile is newer), or
        when Redis is unavailable (C-5; then nothing is stored). Its answers have
        `layer` LOADER and `ttl` None (not read under tracking).
        """
        if loader is None:
            return (await self.lookup_many((key,)))[key]
        try:
            found = (await self.lookup_many((key,)))[key]
        except CacheUnavailable:
            return Lookup(await loader(key), None, Layer.LOADER)
        if found.value is not None:
            return found
        value = await loader(key)
        if value is not None:
            await self._store_loaded(key, value, loader_ttl)
        return Lookup(value, None, Layer.LOADER)

    async def _store_loaded(self, key: str, value: bytes, ttl: float | None) -> None:
        px = _px(ttl)
        self._forget((key,))  # the cached miss
        try:
            # The caller has its value: Redis failing to keep it must not fail the read.
            with contextlib.suppress(CacheUnavailable):
                await self._redis.run(lambda r: r.set(key, value, px=px, nx=True), key=key)
        finally:
            self._forget((key,))

    async def lookup_many(self, keys: Iterable[str]) -> dict[str, Lookup]:
        """Answers from L1 where it can; the other keys are fetched in one pipeline,
        sharing any fetch of the same key already in flight (single flight).

        A reader that joins a fetch whose read was already sent started after that
        read ran, so it first applies the pushes already received (`drain`): a
        write or expiry it could have seen detaches the fetch, and it starts its
        own. It also drops a shared answer that has expired by the time it arrives
        or whose fetch was invalidated meanwhile, and reads again (issue 9).
        """
        now = monotonic()
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Lookup] = {}
        waiting: dict[str, tuple[Flight, bool]] = {}
        fresh: dict[str, Flight] = {}
        drained: set[str] = set()
        for key in wanted:
            entry = self._entries.get(key)
            if entry is not None and entry[1] > now:
                self._l1_hits += 1
                found[key] = Lookup(entry[0], entry[1] - now, Layer.L1, entry[1])
                continue
            flight = self._flights.get(key)
            if flight is not None and flight.sent:
                self._drain(key, drained)
                flight = self._flights.get(key)
            if flight is None:
                flight = fresh[key] = self._new_flight(key)
            waiting[key] = flight, flight.sent
        self._start(fresh)
        retry: list[str] = []
        for key, (flight, late) in waiting.items():
            # shield: one caller giving up must not cancel the fetch others share.
            lookup = await asyncio.shield(flight.future)
            if late and not still_valid(flight, lookup):
                retry.append(key)
            else:
                found[key] = lookup
        if retry:
            # Fetches of our own, sent after this read started: no second retry.
            again = {key: self._new_flight(key) for key in retry}
            self._start(again)
            for key, flight in again.items():
                found[key] = await asyncio.shield(flight.future)
        return {key: found[key] for key in wanted}

    def _new_flight(self, key: str) -> Flight:
        flight = self._flights[key] = Flight(asyncio.get_running_loop())
        return flight

    def _start(self, flights: dict[str, Flight]) -> None:
        """Spawn the fetches: one per node, so a master that is down fails only its keys."""
        if not flights:
            return
        try:
            groups = self._topology.group(flights)
        except CacheUnavailable as exc:
            self._refresh_topology()
            for key, flight in flights.items():
                self._land(key, flight)
                flight.future.set_exception(exc)
            return
        for name, group in groups.items():
            node = self._topology.nodes[name]
            self._spawn(self._fetch(node, group, [flights[k] for k in group]))

    def _drain(self, key: str, drained: set[str]) -> None:
        """Apply the pushes already received on `key`'s tracking connection (once per call)."""
        with contextlib.suppress(CacheUnavailable):
            node = self._topology.node_for(key)
            if node.name not in drained:
                drained.add(node.name)
                node.tracker.drain()

    async def _fetch(self, node: Node, keys: list[str], flights: list[Flight]) -> None:
        for flight in flights:
            flight.sent = True  # the read goes out in this step, before any await
        self._fold_hits()
        metrics.L1_MISSES.inc(len(keys))
        try:
            try:
                lookups = await self._tracked_read(node, keys)
            except (TrackingUnavailable, _Rerouted):
                self._refresh_topology()  # the slot may have a new master
                lookups = await self._untracked_read(node, keys)
        except BaseException as exc:
            # Waiters were not cancelled themselves: they get a typed error, never
            # a CancelledError that is not theirs.
            shared = exc if isinstance(exc, Exception) else CacheUnavailable("cache closed")
            for key, flight in zip(keys, flights, strict=True):
                self._land(key, flight)
                if not flight.future.done():
                    flight.future.set_exception(shared)
            if not isinstance(exc, Exception):
                raise
            return
        hits = sum(1 for lk in lookups if lk.value is not None)
        metrics.L2_HITS.inc(hits)
        metrics.L2_MISSES.inc(len(keys) - hits)
        for key, flight, lookup in zip(keys, flights, lookups, strict=True):
            self._land(key, flight)
            if not flight.future.done():
                flight.future.set_result(lookup)

    def _land(self, key: str, flight: Flight) -> None:
        # Only our own flight: an invalidation may have detached it and a newer one
        # may already be in the map.
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _tracked_read(self, node: Node, keys: list[str]) -> list[Lookup]:
        """GET + PTTL per key on the node's tracking connection; fills L1 where allowed."""
        tracker = node.tracker
        if not tracker.up:
            raise TrackingUnavailable("tracking connection is down")
        tickets = [self._guard.begin(k) for k in keys]
        sent_at = monotonic()
        commands: list[tuple[str | bytes | int, ...]] = []
        for key in keys:
            commands += [("GET", key), ("PTTL", key)]

        async def read() -> list[Any]:
            try:
                return await _gather(tracker.send(*commands))
            except ConnectionLost as exc:
                # Lost under this read (e.g. Redis killed): that says tracking is
                # down, not that Redis refused; the caller retries untracked and
                # only that retry speaks for the breaker.
                raise TrackingUnavailable(f"tracking connection lost: {exc}") from exc

        try:
            replies = await self._redis.guard(read, node.breaker)
        except BaseException:
            for ticket in tickets:
                self._guard.settle(ticket)
            raise
        # No await from here on: settle-and-fill must not interleave with the reader.
        lookups: list[Lookup] = []
        error: hiredis.ReplyError | None = None
        rerouted = False
        for i, ticket in enumerate(tickets):
            value, pttl = replies[2 * i], replies[2 * i + 1]
            fillable = self._guard.settle(ticket) and tracker.up
            if isinstance(value, hiredis.ReplyError):
                rerouted = rerouted or str(value).startswith(_REROUTE)
                error = value
                continue
            ttl = self._l1_ttl(value, pttl)
            expires_at = None if ttl is None else sent_at + ttl
            if fillable and expires_at is not None:
                self._l1.put(ticket.key, value, expires_at)
            lookups.append(Lookup(value, ttl if fillable else None, Layer.L2, expires_at))
        if rerouted:
            raise _Rerouted(str(error))
        if error is not None:
            raise CacheCommandError(str(error))
        return lookups

    def _l1_ttl(self, value: bytes | None, pttl: Any) -> float | None:
        """How long L1 may keep what GET returned, given PTTL; None: do not keep it."""
        if not isinstance(pttl, int):
            return None
        if value is None:
            # -2: still absent when PTTL ran. Anything else: created in between.
            return self.config.negative_ttl if pttl == -2 else None
        if pttl == -1:
            return self.config.l1_max_ttl
        if pttl > 0:
            return min(pttl / 1000.0, self.config.l1_max_ttl)
        return None  # expired between GET and PTTL

    async def _untracked_read(self, node: Node, keys: list[str]) -> list[Lookup]:
        """Tracking is down: answer from Redis, cache nothing (invalidations may be lost)."""

        async def read(client: Client) -> list[Any]:
            # GETs, not MGET: cluster-safe (redis-py sends each to its slot's master).
            # PTTL too: a reader sharing this fetch needs to know when it expires.
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            return await pipe.execute()

        sent_at = monotonic()
        replies = await self._redis.run(read, breaker=node.breaker)
        lookups = []
        for i in range(len(keys)):
            ttl = self._l1_ttl(replies[2 * i], replies[2 * i + 1])
            expires_at = None if ttl is None else sent_at + ttl
            lookups.append(Lookup(replies[2 * i], None, Layer.L2, expires_at))
        return lookups

    async def sync(self) -> bool:
        """One round trip on each tracking connection. When it returns, every
        invalidation Redis sent before it has been applied to L1. False when
        tracking is down (L1 is then empty and bypassed anyway)."""
        nodes = list(self._topology.nodes.values())
        return bool(nodes) and all(await asyncio.gather(*(self._sync(n) for n in nodes)))

    async def _sync(self, node: Node) -> bool:
        try:
            await self._redis.guard(lambda: _gather(node.tracker.send(("PING",))), node.breaker)
        except TrackingUnavailable:
            return False
        return True

    # -- writes --------------------------------------------------------------------

    async def set(self, key: str, value: bytes | str, ttl: float | None = None) -> None:
        """SET with an optional TTL in seconds, millisecond granularity (PX)."""
        px = _px(ttl)
        self._forget((key,))
        try:
            await self._redis.run(lambda r: r.set(key, value, px=px), key=key)
        finally:
            self._forget((key,))

    async def delete(self, *keys: str) -> int:
        """UNLINK the keys; the number that existed.

        On a cluster, keys are sent per master and split by slot (redis-py sends
        one UNLINK per slot): atomic only for keys sharing a hash tag, `{user:1}:a`.
        """
        if not keys:
            return 0
        self._forget(keys)
        try:
            groups = self._topology.group(keys)
            counts = await asyncio.gather(
                *(
                    self._redis.run(lambda r, g=group: r.unlink(*g), key=group[0])  # type: ignore[misc]
                    for group in groups.values()
                )
            )
            return sum(int(count) for count in counts)
        finally:
            self._forget(keys)

    async def delete_prefix(self, prefix: str, batch: int | None = None) -> int:
        """Delete every key starting with `prefix`: SCAN MATCH in batches + UNLINK, never KEYS."""
        if not prefix:
            raise ValueError("refusing to delete with an empty prefix")
        pattern = escape_glob(prefix) + "*"
        count = batch or self.config.scan_batch
        self._forget_prefix(prefix)
        try:
            if not self._topology.cluster:
                return await self._delete_matching(pattern, count, None)
            # SCAN only walks the node it is sent to: walk every master.
            client = self._redis.client
            assert isinstance(client, aioredis.RedisCluster)
            masters = [client.get_node(node_name=name) for name in self._topology.nodes]
            counts = await asyncio.gather(
                *(self._delete_matching(pattern, count, m) for m in masters if m is not None)
            )
            return sum(counts)
        finally:
            self._forget_prefix(prefix)

    async def _delete_matching(self, pattern: str, count: int, node: ClusterNode | None) -> int:
        """SCAN + UNLINK batches on one server (`node`: a cluster master)."""
        target: dict[str, Any] = {} if node is None else {"target_nodes": node}
        breaker = self._topology.nodes[node.name].breaker if node is not None else None
        deleted = 0
        cursor = 0
        while True:
            reply, found = await self._redis.run(
                lambda r, c=cursor: r.scan(c, match=pattern, count=count, **target),  # type: ignore[misc]
                breaker=breaker,
            )
            # A cluster client answers {node name: cursor}, even for one node.
            cursor = int(reply[node.name] if node is not None else reply)
            if found:
                deleted += int(
                    await self._redis.run(lambda r, f=found: r.unlink(*f), breaker=breaker)  # type: ignore[misc]
                )
            if cursor == 0:
                return deleted

    # -- invalidation --------------------------------------------------------------

    def invalidations(self, maxsize: int = 1024) -> InvalidationStream:
        """Subscribe to invalidation events (keys, or flush); use `async with` / `async for`."""
        return self._hub.subscribe(maxsize)

    def on_invalidation(self, listener: Callable[[Invalidation], None]) -> Callable[[], None]:
        """Call `listener(event)` synchronously as each event is applied to L1 (it
        must not block; its exceptions are logged); returns the function that stops it."""
        return self._hub.listen(listener)

    def _forget(self, keys: Iterable[str]) -> list[str]:
        """Drop the keys from L1, spoil their fills, detach their fetches; the
        keys whose L1 entry was dropped."""
        keys = list(keys)
        dropped = self._l1.discard(keys)
        self._guard.invalidate(keys)
        self._detach(keys)
        return dropped

    def _detach(self, keys: Iterable[str]) -> None:
        """Later readers must not join a fetch sent before the write; readers that
        joined it after it was sent read again."""
        for key in keys:
            flight = self._flights.pop(key, None)
            if flight is not None:
                flight.invalidated = True

    def _forget_prefix(self, prefix: str) -> None:
        self._l1.discard_prefix(prefix)
        self._guard.invalidate_prefix(prefix)
        self._detach([k for k in self._flights if k.startswith(prefix)])

    def _on_invalidate(self, keys: list[str] | None) -> None:
        if keys is None:
            metrics.FLUSH_INVALIDATIONS.inc()
            self._reset("flushall")
            return
        metrics.KEY_INVALIDATIONS.inc(len(keys))
        dropped = self._forget(keys)
        self._hub.publish(
            Invalidation(tuple(keys), dropped=len(dropped), dropped_keys=tuple(dropped))
        )

    def _answering(self, key: str | None) -> bool:
        """Redis (the node serving `key`) is up: its tracking connection is."""
        if key is None:
            return any(node.tracker.up for node in self._topology.nodes.values())
        try:
            return self._topology.node_for(key).tracker.up
        except CacheUnavailable:
            return False

    def _make_tracker(self, name: str, config: CacheConfig) -> Tracker:
        def on_up() -> None:
            self._on_tracking_up(name)

        def on_down(reason: str) -> None:
            self._on_tracking_lost(name, reason)

        return Tracker(config, self._on_invalidate, on_up, on_down)

    def _on_tracking_up(self, name: str) -> None:
        log.info("marquee-cache: tracking connection up, L1 in use")
        node = self._topology.nodes.get(name)
        if node is not None:
            # The node just answered HELLO and CLIENT TRACKING: a successful probe.
            # Waiting out the breaker's reset_timeout as well would refuse every
            # read for up to that long after a restarted Redis is back (issue 9).
            node.breaker.record_success()

    def _on_tracking_lost(self, name: str, reason: str) -> None:
        """Runs inside the connection's close, before any other task (C-3)."""
        if not self._topology.cluster:
            self._reset(reason)
            return
        # Only this master's slots lost their invalidations.
        self._drop(lambda key: self._topology.owner_name(key) == name, reason)
        self._refresh_topology()

    def _on_slots_moved(self, slots: Collection[int]) -> None:
        """Our slot map changed: entries of moved slots were tracked by their old owner."""
        self._drop(lambda key: slot_of(key) in slots, "slots_moved")

    def _drop(self, doomed: Callable[[str], bool], reason: str) -> None:
        """Drop the L1 entries and flights `doomed` selects, refuse every fill in flight."""
        keys = [key for key in self._entries if doomed(key)]
        dropped = len(self._l1.discard(keys))
        self._detach([key for key in self._flights if doomed(key)])
        self._guard.reset()  # all reads in flight: cheaper than sorting them by node
        metrics.L1_FLUSHES.labels(reason).inc()
        # A remote L1 cannot tell which keys a node held: flush is the safe event.
        self._hub.publish(Invalidation(flush=True, reason=reason, dropped=dropped))
        if reason == "tracking_lost":
            log.warning("marquee-cache: a cluster node's tracking lost, its L1 entries dropped")

    def _refresh_topology(self) -> None:
        """Cluster only: re-read the slot map soon, at most once per interval."""
        if not self._topology.cluster or self._closed:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        # Too soon after the last one: deferred, not dropped (the cause may not recur).
        delay = max(0.0, self._refreshed_at + _TOPOLOGY_REFRESH_INTERVAL - monotonic())
        self._refreshed_at = monotonic() + delay
        self._refreshing = asyncio.create_task(self._refresh(delay), name="marquee-cache-topology")
        self._tasks.add(self._refreshing)
        self._refreshing.add_done_callback(self._tasks.discard)

    async def _refresh(self, delay: float) -> None:
        await asyncio.sleep(delay)
        client = self._redis.client
        assert isinstance(client, aioredis.RedisCluster)
        try:
            async with asyncio.timeout(self.config.connect_timeout + self.config.command_timeout):
                await self._topology.refresh(client)
        except Exception as exc:  # the next read or lost connection asks again
            log.warning("marquee-cache: cluster slot map refresh failed: %r", exc)

    def _reset(self, reason: str) -> None:
        """Drop all of L1 and refuse every fill in flight (flush-all, tracking lost)."""
        dropped = self._l1.clear()
        self._guard.reset()
        self._detach(list(self._flights))
        metrics.L1_FLUSHES.labels(reason).inc()
        self._hub.publish(Invalidation(flush=True, reason=reason, dropped=dropped))
        if reason == "tracking_lost":
            log.warning("marquee-cache: tracking connection lost, L1 flushed and bypassed")

    # -- housekeeping --------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fold_hits(self) -> None:
        if self._l1_hits:
            metrics.L1_HITS.inc(self._l1_hits)
            self._l1_hits = 0

    async def _fold_metrics_forever(self) -> None:
        while True:
            await asyncio.sleep(_METRICS_FOLD_INTERVAL)
            self._fold_hits()


_BREAKER_ORDER = [BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN]


async def _gather(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return await asyncio.gather(*futures)


def _px(ttl: float | None) -> int | None:
    """A TTL in seconds as SET's PX (milliseconds, at least 1); None: no TTL."""
    if ttl is None:
        return None
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    return max(1, math.ceil(ttl * 1000))


_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def escape_glob(text: str) -> str:
    """Escape Redis MATCH glob characters so a prefix matches literally."""
    return text.translate(_GLOB_SPECIAL)
