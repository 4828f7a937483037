"""What the coordinator bench measures, written once for any 3-node lease service.

`Subject` is the few operations a measurement needs; `coordinator_bench_cluster`
(Marquee) and `coordinator_bench_etcd` (etcd) implement it, so both systems go
through the very same timing code.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from benchlib import Throughput, measure_calls

# Every lease in the throughput runs lives this long: far longer than a run, so a
# name once granted stays held throughout. (So the SafetyLog below cannot see a
# violation in a fault-free run unless the bench or a server is plainly broken: it
# is a consistency check of the bench, not a safety measurement.)
LEASE_TTL = 60
# How long one probe write may run (others start meanwhile, see first_write).
PROBE_ATTEMPT_SECONDS = 0.5
# A new probe write starts this often: the resolution of the failover figures.
PROBE_PAUSE_SECONDS = 0.005
# Reconnect backoff of every bench channel, both systems alike. marquee_lease's
# (100 ms growing to 1 s) is a client's sensible choice, but a probe that polls
# every PROBE_PAUSE_SECONDS through a channel whose backoff has grown while the
# servers were starting measured that backoff (0.6-0.7 s of Marquee's first
# leader on a loaded machine, where a process takes ~3 s to listen; etcd
# listens within ~0.1 s, before its backoff grows), not the servers.
PROBE_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 50),
]
# A cluster that commits nothing for this long is broken (a node that failed to
# start, say): the bench stops instead of probing forever.
WRITE_LIMIT_SECONDS = 60.0


@dataclass(frozen=True)
class Grant:
    """An Acquire's answer: who holds `name` now, with which fencing token."""

    name: str
    acquired: bool
    holder: str
    token: int
    # etcd renews a lease by its id, not by name; Marquee leaves it 0.
    lease_id: int = 0


class KeepAliveStream(Protocol):
    """One long-lived renewal stream (Marquee KeepAlive, etcd LeaseKeepAlive)."""

    async def renew(self, grant: Grant) -> bool:
        """Send one renewal on the stream and read its answer; False if the lease was lost."""
        ...

    async def close(self) -> None: ...


class ThroughputSubject(Protocol):
    """A lease service the throughput figures can drive (the two systems, and the floor)."""

    label: str

    async def acquire(self, name: str, holder: str) -> Grant: ...

    async def renew(self, grant: Grant) -> bool:
        """Renew a lease we were granted with one unary exchange; False if it was lost.

        Marquee: the unary Renew. etcd has no unary renewal: one fresh
        LeaseKeepAlive stream per call (opened, one request, one answer, closed).
        """
        ...

    async def open_keepalive(self) -> KeepAliveStream:
        """A long-lived renewal stream to the current leader (see use_leader)."""
        ...

    async def use_leader(self) -> None:
        """Point the throughput client at the current leader."""


class Subject(ThroughputSubject, Protocol):
    """A 3-node lease service the bench can start, break and drive."""

    node_ids: Sequence[str]

    def spawn(self, node_id: str) -> None:
        """Start a node's process (again, on its existing data dir)."""

    def kill(self, node_id: str) -> None:
        """SIGKILL the node and reap it."""

    def terminate(self, node_id: str) -> None:
        """SIGTERM the node, without waiting for it to exit."""

    async def wait_exit(self, node_id: str) -> None: ...

    async def settled(self) -> tuple[str, int]:
        """Wait until all nodes run, agree on a leader and a write succeeds: (leader, term)."""
        ...

    async def write_once(self, node_id: str, node_ids: Sequence[str], min_term: int) -> int | None:
        """One probe write through `node_id` (one of `node_ids`, the nodes being probed).

        Its term if it committed in a term > min_term, else None.
        """
        ...

    async def transfer(self, leader_id: str) -> None:
        """Planned handover: move leadership off `leader_id`, returning once it moved."""


async def first_write(subject: Subject, node_ids: Sequence[str], min_term: int) -> int:
    """The term of the first write that commits in a term > min_term through these nodes.

    Hedged: a new attempt starts every PROBE_PAUSE_SECONDS on the next node while
    earlier ones keep running, so the figure is when the cluster could first
    commit, not when some attempt timed out. (An etcd follower forwards a write
    to a leader that drops it while it hands over, and the write then hangs
    until the caller's deadline; one attempt at a time would measure that.)
    """
    pending: set[asyncio.Task[int | None]] = set()
    try:
        async with asyncio.timeout(WRITE_LIMIT_SECONDS):
            return await _hedged_writes(subject, node_ids, min_term, pending)
    finally:
        for task in pending:
            task.cancel()


async def _hedged_writes(
    subject: Subject,
    node_ids: Sequence[str],
    min_term: int,
    pending: set[asyncio.Task[int | None]],
) -> int:
    """first_write's loop; `pending` is the caller's, so it can cancel what is left."""
    loop = asyncio.get_running_loop()
    for node_id in itertools.cycle(node_ids):
        pending.add(asyncio.create_task(subject.write_once(node_id, node_ids, min_term)))
        next_attempt = loop.time() + PROBE_PAUSE_SECONDS
        while pending and (left := next_attempt - loop.time()) > 0:
            done, _ = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            pending -= done
            for task in done:
                if (term := task.result()) is not None:
                    return term
        await asyncio.sleep(max(0.0, next_attempt - loop.time()))
    raise AssertionError("unreachable")


async def time_to_first_write(subject: Subject) -> float:
    """From spawning every node to the first committed write."""
    began = time.perf_counter()
    for node_id in subject.node_ids:
        subject.spawn(node_id)
    await first_write(subject, subject.node_ids, min_term=0)
    return time.perf_counter() - began


def nearest_rank(samples: Sequence[float], fraction: float) -> float:
    """The sample at `fraction` by nearest rank: of 10 samples, p90 is the 9th smallest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def others(subject: Subject, node_id: str) -> list[str]:
    return [n for n in subject.node_ids if n != node_id]


async def failover_after_kill(subject: Subject) -> float:
    """kill -9 of the leader until the next write commits; the node is restarted after."""
    leader, term = await subject.settled()
    began = time.perf_counter()
    subject.kill(leader)
    await first_write(subject, others(subject, leader), min_term=term)
    elapsed = time.perf_counter() - began
    subject.spawn(leader)
    return elapsed


async def handover_on_sigterm(subject: Subject) -> float:
    """SIGTERM of the leader until a write commits under a new leader; restarted after."""
    leader, term = await subject.settled()
    began = time.perf_counter()
    subject.terminate(leader)
    # Only the survivors are written to, and only a higher term counts: a write the
    # old leader still commits while it hands over is not the handover being done.
    await first_write(subject, others(subject, leader), min_term=term)
    elapsed = time.perf_counter() - began
    await subject.wait_exit(leader)
    subject.spawn(leader)
    return elapsed


async def handover_on_transfer(subject: Subject) -> float:
    """A transfer call (TransferLeadership / MoveLeader) until a write commits under the new leader.

    The writes run alongside the call rather than after it: both calls answer
    only some time after the new leader serves (etcd polls for the change every
    100 ms; Marquee waits until the new leader's epoch has reached the old one),
    and a caller's writes do not wait for an operator's call to return.
    Returns math.inf if the transfer call failed.
    """
    leader, term = await subject.settled()
    began = time.perf_counter()
    transfer = asyncio.create_task(subject.transfer(leader))
    probe = asyncio.create_task(first_write(subject, others(subject, leader), min_term=term))
    await asyncio.wait({transfer, probe}, return_when=asyncio.FIRST_COMPLETED)
    if transfer.done() and (error := transfer.exception()) is not None:
        probe.cancel()
        # Shown, so a failed transfer can be told from a bench problem.
        print(f"  {subject.label}: transfer call failed: {error!r}", flush=True)
        return math.inf
    await probe
    elapsed = time.perf_counter() - began
    await transfer  # it must have succeeded too
    return elapsed


async def handover_on_transfer_busy(subject: Subject) -> float:
    """handover_on_transfer while one client keeps writing to the leader, as callers do."""
    await subject.use_leader()
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await subject.acquire(f"busy/{n}", "busy-writer")
            except Exception:  # whatever the client raises once the leader moved
                await asyncio.sleep(0.01)

    busy = asyncio.create_task(writer())
    try:
        return await handover_on_transfer(subject)
    finally:
        stop.set()
        await busy


@dataclass
class SafetyLog:
    """Every grant and refusal seen in the throughput runs, checked for double grants.

    Each name is contended by two would-be holders and no lease ends during a run,
    so every answer about a name (the grant, and the refusal naming the winner)
    must agree on one (holder, token). Renewals of our own grants must succeed.
    With 60 s leases and no faults this cannot fail unless something is broken, so
    it is reported as a check of the run, not as a safety figure.
    """

    seen: dict[str, set[tuple[str, int]]] = field(default_factory=lambda: defaultdict(set))
    granted: list[Grant] = field(default_factory=list)
    lost_renewals: int = 0

    def record(self, grant: Grant) -> None:
        # A refusal may carry no holder (lease ended in between); it tells nothing.
        if grant.acquired or grant.holder:
            self.seen[grant.name].add((grant.holder, grant.token))
        if grant.acquired:
            self.granted.append(grant)

    @property
    def violations(self) -> int:
        """Extra (holder, token) pairs seen for a name, plus renewals refused."""
        doubles = sum(len(pairs) - 1 for pairs in self.seen.values() if len(pairs) > 1)
        return doubles + self.lost_renewals


async def acquire_throughput(
    subject: ThroughputSubject, *, concurrency: int, seconds: float, log: SafetyLog, run: str
) -> Throughput:
    """Acquire calls/s; attempt n competes with attempt n^1 for the name `run/n//2`."""
    attempts = itertools.count()

    async def one() -> None:
        n = next(attempts)
        log.record(await subject.acquire(f"{run}/{n // 2}", f"{run}-holder-{n}"))

    return await measure_calls(one, concurrency=concurrency, seconds=seconds)


async def renew_throughput(
    subject: ThroughputSubject,
    grants: Sequence[Grant],
    *,
    concurrency: int,
    seconds: float,
    log: SafetyLog,
) -> Throughput:
    """Unary renewals/s, cycling over leases granted earlier in this run.

    Marquee's unary Renew against etcd's only single-shot form: a fresh
    LeaseKeepAlive stream per renewal (see Subject.renew).
    """
    pool = itertools.cycle(grants)

    async def one() -> None:
        if not await subject.renew(next(pool)):
            log.lost_renewals += 1

    return await measure_calls(one, concurrency=concurrency, seconds=seconds)


async def renew_stream_throughput(
    subject: ThroughputSubject,
    grants: Sequence[Grant],
    *,
    concurrency: int,
    seconds: float,
    log: SafetyLog,
) -> Throughput:
    """Renewals/s over long-lived streams, one per concurrent client, as a holder keeps one.

    Each call writes one renewal on its client's stream and reads its answer;
    the streams are opened before the clock starts and closed after it stops.
    """
    pool = itertools.cycle(grants)
    streams = [await subject.open_keepalive() for _ in range(concurrency)]
    free: asyncio.Queue[KeepAliveStream] = asyncio.Queue()
    for stream in streams:
        free.put_nowait(stream)

    async def one() -> None:
        # `concurrency` callers and as many streams: each caller in effect keeps one.
        stream = free.get_nowait()
        try:
            if not await stream.renew(next(pool)):
                log.lost_renewals += 1
        finally:
            free.put_nowait(stream)

    try:
        return await measure_calls(one, concurrency=concurrency, seconds=seconds)
    finally:
        for stream in streams:
            await stream.close()


async def wait_for_quiet_machine(*, threshold: float, tries: int, pause: float) -> float:
    """The 1-minute load average, after waiting (a bounded while) for it to drop."""
    load = os.getloadavg()[0]
    for _ in range(tries):
        if load < threshold:
            break
        print(f"load average {load:.2f} >= {threshold}: waiting {pause:.0f} s", flush=True)
        await asyncio.sleep(pause)
        load = os.getloadavg()[0]
    return load
