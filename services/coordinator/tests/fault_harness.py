"""Randomized fault rounds against real coordinator processes, with fenced workers (K-2, K-7).

Workers are asyncio tasks in the test process that contend for a few lease names
through `marquee_lease` and write to a `FencedStore` with their token while
`held.valid()`. Meanwhile a seeded schedule applies one fault per round to the
`python -m marquee_coordinator` processes, heals it, and waits until the cluster
is whole and a write is accepted again. Blocking process/gRPC helpers run in
threads so the workers' renewals are never held up by the fault driver.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from coordinator_cluster import free_port
from fencing_resource import FencedStore
from grpc_cluster import ADMIN, GrpcNode, wait_for_leader, wait_until_serving

from marquee.coordinator.v1 import cluster_pb2
from marquee_lease import (
    AcquireResult,
    CoordinatorClient,
    CoordinatorError,
    LeaseTaken,
    RenewResult,
)


@dataclass(frozen=True)
class Timing:
    """The nodes' Raft timing (MARQUEE_COORDINATOR_RAFT_TIMING) and the leases used under it.

    Short leases so that a pause "longer than the TTL" keeps rounds short. The
    TTL is near the shortest each timing allows (two maximal election timeouts:
    1.2 s fast, 2.0 s default), where the relations between TTL, election timeout,
    pause threshold and leader fallback are tightest.
    """

    name: str
    ttl: float

    @property
    def pause(self) -> float:
        """A SIGSTOP outlasts the TTL (default timing: yet not the 3 s leader fallback)."""
        return self.ttl + 0.5


FAST = Timing("fast", ttl=1.5)
DEFAULT = Timing("default", ttl=2.0)
NAMES = ("fenced-a", "fenced-b")
WORKERS = 3
# A write "takes" this long: the lease is checked before and again at commit.
WRITE_TIME = 0.02
WRITE_GAP = 0.03
# How long one round may wait for the cluster to serve again before it fails.
ROUND_TIMEOUT = 30.0

T = TypeVar("T")

KINDS = (
    "kill-leader",
    "kill-follower",
    "stop-leader",
    "stop-follower",
    "restart-all",
    "replace-member",
)


@dataclass
class Success:
    """A coordinator call that granted or renewed a lease: sent at, answered at."""

    sent_at: float
    done_at: float


class RecordingClient(CoordinatorClient):
    """Records every successful acquire and renew (the lease renewer's calls too)."""

    def __init__(self, endpoints: list[str], successes: list[Success]) -> None:
        # Attempts to a stopped node must give up quickly so the client moves on.
        super().__init__(endpoints, timeout=5.0, attempt_timeout=0.5)
        self.successes = successes

    async def acquire(
        self,
        name: str,
        holder_id: str,
        ttl: float,
        *,
        wait: float = 0.0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AcquireResult:
        result = await super().acquire(
            name, holder_id, ttl, wait=wait, request_id=request_id, timeout=timeout
        )
        if result.acquired:
            self.successes.append(Success(result.sent_at, time.monotonic()))
        return result

    async def renew(
        self,
        name: str,
        holder_id: str,
        token: int,
        *,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> RenewResult:
        result = await super().renew(name, holder_id, token, ttl=ttl, timeout=timeout)
        if result.renewed:
            self.successes.append(Success(result.sent_at, time.monotonic()))
        return result


@dataclass
class Round:
    number: int
    kind: str
    target: str
    failover: float | None  # fault -> first successful acquire/renew sent after it
    writes: int = 0  # writes accepted between the fault and the end of the round

    def __str__(self) -> str:
        took = "none" if self.failover is None else f"{self.failover * 1000:.0f} ms"
        return f"round {self.number:3d} {self.kind:<15} node {self.target:<3} {took:>8}"


@dataclass
class Run:
    seed: int
    rounds: list[Round] = field(default_factory=list)
    store: FencedStore = field(default_factory=FencedStore)
    successes: list[Success] = field(default_factory=list)
    grants: list[tuple[str, str, int]] = field(default_factory=list)  # name, holder, token
    errors: int = 0
    # Renewals the live members answered under their leader lease (local renewal runs).
    local_renewals: int = 0

    def failovers(self, kinds: tuple[str, ...] = KINDS) -> list[float]:
        return [r.failover for r in self.rounds if r.kind in kinds and r.failover is not None]

    def report(self) -> str:
        lines = [f"seed {self.seed}: {len(self.rounds)} fault rounds"]
        lines += [str(r) for r in self.rounds]
        for label, kinds in [
            ("all faults", KINDS),
            ("leader faults", ("kill-leader", "stop-leader", "restart-all")),
        ]:
            times = self.failovers(kinds)
            if times:
                lines.append(
                    f"failover ({label}, n={len(times)}): median {statistics.median(times):.3f} s,"
                    f" p90 {percentile(times, 0.9):.3f} s, max {max(times):.3f} s"
                )
        lines.append(
            f"local renewals {self.local_renewals}, "
            f"writes accepted {len(self.store.accepted())}, fenced off "
            f"{len(self.store.rejected())}, grants {len(self.grants)}, "
            f"coordinator errors seen by workers {self.errors}"
        )
        return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def worker(
    index: int,
    endpoints: list[str],
    run: Run,
    rng: random.Random,
    stop: asyncio.Event,
    ttl: float,
) -> None:
    """Take a lease, write with its token while it is valid, give it up; repeat."""
    attempt = 0
    async with RecordingClient(endpoints, run.successes) as client:
        while not stop.is_set():
            attempt += 1
            name = rng.choice(NAMES)
            holder = f"w{index}-{attempt}"
            try:
                async with client.lease(name, ttl, holder_id=holder) as held:
                    run.grants.append((name, holder, held.token))
                    until = time.monotonic() + rng.uniform(0.3, 3 * ttl)
                    while time.monotonic() < until and not stop.is_set():
                        if not held.valid():
                            break
                        started = time.monotonic()
                        await asyncio.sleep(WRITE_TIME)
                        # No await between the check and the commit: the write
                        # lands while the lease is certainly ours.
                        if held.valid():
                            run.store.write(name, holder, held.token, started)
                        await asyncio.sleep(WRITE_GAP)
            except LeaseTaken:
                await asyncio.sleep(rng.uniform(0.02, 0.1))
            except CoordinatorError:
                run.errors += 1
                await asyncio.sleep(rng.uniform(0.05, 0.2))


class FaultCluster:
    """Three coordinator processes whose membership may change from round to round."""

    def __init__(self, root: Path, timing: Timing, local_renewal: bool = True) -> None:
        self.root = root
        self.timing = timing
        self.local_renewal = local_renewal
        # marquee_coordinator_local_renewals_total last read, per (member, process id).
        self._local_counts: dict[tuple[str, int], int] = {}
        self.nodes = [
            GrpcNode(
                i,
                root / f"n{i}",
                timing=timing.name,
                local_renewal=local_renewal,
                metrics_port=free_port() if local_renewal else -1,
            )
            for i in (1, 2, 3)
        ]
        self.next_id = 4
        for node in self.nodes:
            node.peers = [n.raft_address for n in self.nodes if n is not node]

    @property
    def endpoints(self) -> list[str]:
        # Replaced members reuse their predecessor's addresses, so this list stays good.
        return [n.grpc_address for n in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        wait_until_serving(self.nodes, timeout=ROUND_TIMEOUT)

    def close(self) -> None:
        for node in self.nodes:
            node.kill()  # SIGKILL also ends a SIGSTOPped process

    def count_local_renewals(self) -> int:
        """marquee_coordinator_local_renewals_total over every process run so far.

        Read from each member now answering (a killed process's count is what it
        had at the last reading: call this before each fault).
        """
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            url = f"http://127.0.0.1:{node.metrics_port}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    text = answer.read().decode()
            except OSError:
                continue  # stopped or still starting: its count is read next time
            for line in text.splitlines():
                if line.startswith("marquee_coordinator_local_renewals_total "):
                    count = int(float(line.split()[1]))
                    self._local_counts[(node.id, node.process.pid)] = count
        return sum(self._local_counts.values())

    async def leader(self) -> GrpcNode:
        return await asyncio.to_thread(wait_for_leader, self.nodes, ROUND_TIMEOUT)

    async def whole(self) -> None:
        """Every member runs and serves (has a leader): ready for the next fault."""
        await asyncio.to_thread(wait_until_serving, self.nodes, ROUND_TIMEOUT)

    async def restart(self, node: GrpcNode) -> None:
        await asyncio.to_thread(node.start)

    async def replace(self, rng: random.Random) -> GrpcNode:
        """Remove a follower through the ClusterService, then add a fresh node in its place."""
        leader = await self.leader()
        gone = rng.choice([n for n in self.nodes if n is not leader])
        await self._change(
            lambda lead: lead.cluster.MemberRemove(
                cluster_pb2.MemberRemoveRequest(id=gone.id), timeout=5, metadata=ADMIN
            )
        )
        await asyncio.to_thread(gone.kill)
        new = GrpcNode(
            self.next_id,
            self.root / f"n{self.next_id}",
            raft_address=gone.raft_address,
            grpc_address=gone.grpc_address,
            timing=self.timing.name,
            local_renewal=self.local_renewal,
            metrics_port=free_port() if self.local_renewal else -1,
        )
        self.next_id += 1
        added = await self._change(
            lambda lead: lead.cluster.MemberAdd(
                cluster_pb2.MemberAddRequest(
                    id=new.id, raft_address=new.raft_address, grpc_address=new.grpc_address
                ),
                timeout=5,
                metadata=ADMIN,
            )
        )
        new.peers = [m.raft_address for m in added.members if m.id != new.id]
        self.nodes[self.nodes.index(gone)] = new
        await asyncio.to_thread(new.start)
        return gone

    async def _change(self, call: Callable[[GrpcNode], T]) -> T:
        """A membership call on the leader, retried while leadership or liveness settles."""
        deadline = time.monotonic() + ROUND_TIMEOUT
        while True:
            leader = await self.leader()
            try:
                return await asyncio.to_thread(call, leader)
            except grpc.RpcError as error:
                code = error.code()
                retry = (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.ABORTED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if code not in retry or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


async def one_round(number: int, kind: str, cluster: FaultCluster, run: Run) -> Round:
    rng = random.Random(f"{run.seed}-{number}")

    async def first_success(since: float) -> float:
        def seen() -> bool:
            return any(s.sent_at >= since for s in run.successes)

        await wait_for(seen, ROUND_TIMEOUT, f"round {number} ({kind}): no acquire/renew after it")
        return min(s.done_at for s in run.successes if s.sent_at >= since) - since

    leader = await cluster.leader()
    follower = rng.choice([n for n in cluster.nodes if n is not leader])
    writes_before = len(run.store.accepted())
    target: GrpcNode = leader if kind.endswith("leader") else follower
    fault_at = time.monotonic()
    heal: Callable[[], Awaitable[None]] | None = None
    if kind in ("kill-leader", "kill-follower"):
        target.kill()
        failover = await first_success(fault_at)
        heal = lambda: cluster.restart(target)  # noqa: E731
    elif kind in ("stop-leader", "stop-follower"):
        assert target.process is not None
        target.process.send_signal(signal.SIGSTOP)
        # Others keep being served while it is stopped; it stays stopped past the TTL.
        failover = await first_success(fault_at)
        await asyncio.sleep(max(0.0, fault_at + cluster.timing.pause - time.monotonic()))
        target.process.send_signal(signal.SIGCONT)
    elif kind == "restart-all":
        target = leader
        for node in cluster.nodes:
            node.kill()
        for node in cluster.nodes:
            await cluster.restart(node)
        failover = await first_success(fault_at)
    elif kind == "replace-member":
        target = await cluster.replace(rng)
        failover = await first_success(fault_at)
    else:
        raise ValueError(kind)
    if heal is not None:
        await heal()
    healed_at = time.monotonic()
    await cluster.whole()
    # Progress: somebody writes with a valid lease after the heal.
    await wait_for(
        lambda: run.store.accepted_after(healed_at) > 0,
        ROUND_TIMEOUT,
        f"round {number} ({kind}): no write accepted after healing",
    )
    return Round(
        number, kind, target.id, failover, writes=len(run.store.accepted()) - writes_before
    )


def schedule(seed: int, rounds: int) -> list[str]:
    """Every kind at least once (in a seeded order), the rest drawn at random."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    kinds += [rng.choice(KINDS) for _ in range(rounds - len(kinds))]
    return kinds[:rounds]


async def run_faults(
    root: Path, seed: int, rounds: int, timing: Timing = FAST, local_renewal: bool = True
) -> Run:
    """Start the cluster and workers, apply `rounds` fault rounds, stop, return the history."""
    run = Run(seed)
    cluster = FaultCluster(root, timing, local_renewal)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(cluster.start)
        endpoints = cluster.endpoints
        tasks = [
            asyncio.create_task(
                worker(i, endpoints, run, random.Random(f"{seed}-w{i}"), stop, timing.ttl)
            )
            for i in range(WORKERS)
        ]
        started = time.monotonic()
        await wait_for(lambda: run.store.accepted_after(started) > 0, ROUND_TIMEOUT, "no writes")
        for number, kind in enumerate(schedule(seed, rounds), 1):
            if local_renewal:
                run.local_renewals = await asyncio.to_thread(cluster.count_local_renewals)
            result = await one_round(number, kind, cluster, run)
            run.rounds.append(result)
            print(result, flush=True)
        stop.set()
        # Workers finish their block (and release) before the cluster goes away;
        # a worker that crashed raises here.
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        if local_renewal:
            run.local_renewals = await asyncio.to_thread(cluster.count_local_renewals)
    except BaseException:
        print(run.report())
        for node in cluster.nodes:
            print(f"--- node {node.id} log tail\n{node.log_tail(15)}")
        raise
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(cluster.close)
    return run
