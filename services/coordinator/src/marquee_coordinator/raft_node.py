"""One coordinator Raft node: pysyncobj plus the lease state machine, with an asyncio API.

Threads: pysyncobj runs a tick thread that receives, commits and applies log
entries and runs `_on_tick`; the async API is called from the event loop
thread and only proposes commands and awaits their results. The state is
mutated only on the tick thread, under `ReplicatedLeases.lock`, which the
loop thread takes for its few direct reads.

Who may decide what (docs/coordinator-timing.md):
- acquire, renew, release are decided by the state machine at apply time, on
  every replica alike; only the serving leader proposes them, stamped with its
  epoch, and the state machine refuses any command from a replaced epoch;
- expiry is decided by the serving leader's monotonic clock and committed as
  `Expire`, which the state machine re-validates;
- "serving" means pysyncobj says we lead *and* our `StartEpoch` for the
  current term has been applied here, so our state holds every earlier commit.

Construct the node on the main thread: pysyncobj stops its tick thread when
the thread that created it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import os
import queue
import random
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConsumer, SyncObjException, replicated

from marquee_coordinator import metrics, raft_logging
from marquee_coordinator.errors import (
    CoordinatorError,
    EventsCompacted,
    GrantEnded,
    InvalidLeaseRequest,
    LeaseHeld,
    LeaseNotHeld,
    MemberExists,
    MembershipChangeInProgress,
    NotLeader,
    OutcomeUnknown,
    RequestIdReused,
    TransferFailed,
    Unavailable,
    UnknownMember,
)
from marquee_coordinator.expiry import Deadlines, Due
from marquee_coordinator.leader_lease import LeaseTransport
from marquee_coordinator.membership import MemberView, Role, check_add, check_remove
from marquee_coordinator.raft_clock import DeadlinePoller, raft_now
from marquee_coordinator.raft_config import NodeConfig
from marquee_coordinator.raft_log_guard import LogGuardTransport
from marquee_coordinator.raft_snapshots import BackgroundSerializer
from marquee_coordinator.raft_transport import keepalive_interval
from marquee_coordinator.raft_watch import RaftWatch
from marquee_coordinator.state import (
    Acquire,
    Batch,
    Command,
    Epoch,
    Expire,
    ForgetMember,
    GetLease,
    Lease,
    LeaseEvent,
    LeaseState,
    ListLeases,
    Member,
    Outcome,
    RegisterMember,
    Rejection,
    Release,
    Renew,
    StartEpoch,
)

log = structlog.stdlib.get_logger(__name__)

MAX_LEASE_TTL = 24 * 3600.0
MAX_KEY_LENGTH = 256  # names, holders and request ids live in the replicated state
WATCH_BACKLOG = 10_000  # events queued for one slow watcher before it is cut off
COMMIT_TIMEOUT = 10.0
# How long close() waits for a full dump being written (100,000 leases: ~1 s).
DUMP_WAIT_SECONDS = 30.0
# Most commands in one group-commit entry: keeps an entry well under pysyncobj's
# 64 KiB message size, above which it is split into several transmissions.
MAX_BATCH = 128
# Group commit delay, like PostgreSQL's commit_delay: when calls run
# concurrently (others wait for a commit too), the tick thread waits this
# long before it takes the next batch. Its sleep hands the GIL, the leader's
# bottleneck under load, to the event loop, which reads more calls meanwhile:
# batches grow, and each call costs the leader less CPU. Calls made one at a
# time are proposed at once.
GROUP_COMMIT_DELAY = 0.004

# Results of a proposal that tell us nothing was committed.
_NOT_COMMITTED = {
    FAIL_REASON.QUEUE_FULL,
    FAIL_REASON.MISSING_LEADER,
    FAIL_REASON.DISCARDED,
    FAIL_REASON.NOT_LEADER,
    FAIL_REASON.REQUEST_DENIED,
}

ApplyListener = Callable[[Command, Outcome, tuple[LeaseEvent, ...]], None]


_ROLES = (Role.FOLLOWER, Role.CANDIDATE, Role.LEADER)  # pysyncobj's _RAFT_STATE values


@dataclass(frozen=True, slots=True)
class NodeStatus:
    raft_address: str
    role: Role
    term: int
    leader: str | None  # the leader's Raft address as this node last heard it
    serving: bool  # accepts leader-only calls right now
    epoch: Epoch  # the last leadership committed and applied here
    revision: int
    commit_index: int
    last_applied: int
    peers: dict[str, bool]  # Raft address -> connected


class View(NamedTuple):
    """What every coordinator response header tells: who answers, at what term and revision.

    A tuple, not a frozen dataclass: every KeepAlive answer builds one (3x cheaper).
    """

    cluster_id: str
    member_id: str
    term: int
    revision: int
    leader_id: str  # empty when no leader is known
    leader_address: str  # the leader's gRPC address; empty when unknown


class ReplicatedLeases(SyncObjConsumer):  # type: ignore[misc]
    """The pysyncobj consumer holding the LeaseState; `apply` runs on the tick thread."""

    def __init__(self, on_applied: ApplyListener, on_replaced: Callable[[], None]) -> None:
        # Attributes set before SyncObjConsumer.__init__ are left out of the full dump.
        self.lock = threading.Lock()
        self._on_applied = on_applied
        self._on_replaced = on_replaced
        super().__init__()
        self.state = LeaseState()

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, command: Command | Batch) -> Outcome | tuple[Outcome, ...]:
        """One command's outcome; a Batch's sub-commands one by one, with a tuple of outcomes."""
        with self.lock:
            if isinstance(command, Batch):
                return tuple(self._apply_one(c) for c in command.commands)
            return self._apply_one(command)

    def _apply_one(self, command: Command) -> Outcome:
        outcome, events = self.state.apply(command)
        # Listeners run under the lock so a watcher registering meanwhile
        # sees each event either in the history or in its queue.
        _never_raise(self._on_applied, command, outcome, events)
        return outcome

    def _serialize(self) -> dict[str, Any]:
        # Called by pysyncobj on the tick thread, between two applies, when it
        # compacts its log; the dump is then written on another thread
        # (raft_snapshots.py) while commands keep applying: it gets a copy.
        data: dict[str, Any] = super()._serialize()
        data["state"] = self.state.snapshot()
        return data

    def _deserialize(self, data: dict[str, Any]) -> None:
        # Called by pysyncobj when it loads a full dump (restart, or a snapshot from the leader).
        with self.lock:
            super()._deserialize(data)
        _never_raise(self._on_replaced)


class LeaseNode:
    def __init__(self, config: NodeConfig) -> None:
        config.check_secure()
        self.config = config
        self.address = config.raft_address
        self.member_id = str(config.node_id)
        self._closed = False
        config.node_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_exclusively(config.lock_file)
        # Tick thread only:
        self._deadlines = Deadlines()
        self._last_tick: float | None = None
        self._next_expiry_scan = 0.0
        self._epoch_proposed: int | None = None
        # Guarded by self._leases.lock:
        self._watchers: set[_Watcher] = set()
        self._pending: set[_Pending] = set()
        self._pending_lock = threading.Lock()
        # Functions to run on the tick thread, where pysyncobj's state may be touched.
        self._tick_calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # Commands waiting to be proposed together as one Batch (group commit).
        self._proposals: queue.SimpleQueue[tuple[Command, _Pending]] = queue.SimpleQueue()
        # Set when the tick thread has been woken and has not yet taken the
        # waiting commands: one wake-up per batch, not per call.
        self._wake_requested = False
        # Tick thread only: the batch now committing, by number, and when it was
        # proposed; None when no batch is committing.
        self._batch_in_flight: tuple[int, float] | None = None
        self._batch_numbers = itertools.count()
        # Set on the serving leader while it hands leadership over: it accepts no
        # new command, so the target can match its whole log (Raft thesis 3.10).
        self._handing_over = False
        self._registering_since: float | None = None
        self._membership_lock = asyncio.Lock()

        self._watch = RaftWatch(config.raft_address, config.timing.election_max)
        self._log_fields = raft_logging.install(config.raft_address)
        self._leases = ReplicatedLeases(self._on_applied, self._on_replaced)
        if not config.cluster_secret:
            log.warning("raft transport is unauthenticated (dev profile only)", node=self.address)
        self._syncobj_conf = config.syncobj_conf(
            bindAddress=config.raft_address, onStateChanged=self._on_state_changed
        )
        # Until this node first hears of a leader, peers that are still starting
        # are retried every tick rather than every connection_retry: the member
        # with the higher address is the only one that connects (pysyncobj), so a
        # refused first attempt would otherwise hold the first election back by
        # a whole retry period. Restored in _tick once a leader is known.
        timing = config.timing
        self._syncobj_conf.connectionRetryTime = min(timing.tick, timing.connection_retry)
        self._fast_connect = True
        # With local renewal, the transport that gives the leader its lease
        # (echoed send times, the vote guard); otherwise pysyncobj's own. Both
        # keep idle connections alive (raft_transport.py: else a survivor's first
        # vote request after a leader's death is lost, and the vote splits), and
        # keep the entries a follower shares with its leader (raft_log_guard.py).
        self._lease_transport: LeaseTransport | None = None
        keepalive = keepalive_interval(timing.connection_timeout)
        transport_class: Any = functools.partial(LogGuardTransport, keepalive=keepalive)
        if config.local_renewal:
            transport_class = functools.partial(
                self._make_lease_transport, guard=timing.vote_guard, keepalive=keepalive
            )
        try:
            self._raft = SyncObj(
                config.raft_address,
                list(config.peers),
                conf=self._syncobj_conf,
                consumers=[self._leases],
                transportClass=transport_class,
            )
            # Log compaction writes the full dump off the tick thread (raft_snapshots.py).
            self._snapshots = BackgroundSerializer(
                str(config.dump_file), self._syncobj_conf.logCompactionBatchSize
            )
            self._raft._SyncObj__serializer = self._snapshots
            # Its deadlines are met when due, not at the end of a tick (raft_clock.py).
            self._raft._poller = DeadlinePoller(self._raft._poller, self._raft)
            self._raft.waitBinded()
        except SyncObjException as exc:
            self._release_resources()
            raise Unavailable(f"cannot bind the Raft port {config.raft_address}: {exc}") from exc
        self._shorten_first_election()
        # Wakes the tick thread from its poll, which otherwise sleeps up to a tick.
        # pysyncobj has it whenever appendEntriesUseBatch is off (on POSIX); its
        # own proposals use it the same way.
        self._tick_notifier = getattr(self._raft, "_SyncObj__pipeNotifier", None)
        self._raft.addOnTickCallback(self._on_tick)
        metrics.NODE.attach(self)
        log.info(
            "raft node started",
            node=self.address,
            peers=list(config.peers),
            data_dir=str(config.node_dir),
            authenticated=bool(config.cluster_secret),
        )

    def _make_lease_transport(self, *args: Any, guard: float, keepalive: float) -> Any:
        self._lease_transport = LeaseTransport(*args, guard=guard, keepalive=keepalive)
        return self._lease_transport

    def _shorten_first_election(self) -> None:
        """On a node that has never seen a term, campaign after a shorter first timeout.

        pysyncobj draws the first deadline from the whole election window at
        construction; a fresh cluster then waits that long for a leader nobody
        can have. Only a node at term 0 (an empty journal) does this: its
        request for term 1 cannot depose the leader of a cluster that has
        already elected one (that leader is at term >= 1 and ignores it), while
        a restarted member keeps its term and the full window, so it does not
        disrupt a running cluster. The lower bound leaves room for the other
        members' connections and a vote round trip, so two fresh members do not
        split the first vote; a split costs one ordinary timeout. Timeouts
        affect availability only (docs/coordinator-timing.md).
        """
        if self._raft.raftCurrentTerm != 0 or self._raft._getLeader() is not None:
            return
        if self._lease_transport is not None:
            self._lease_transport.forget_acknowledgements()
        t = self.config.timing
        # Election jitter, not a secret.
        first = random.uniform(t.first_election_min, t.first_election_max)  # nosec B311
        # Read by the tick thread on its next tick; a float store is atomic.
        self._raft._SyncObj__raftElectionDeadline = raft_now() + first

    # --- leader-only calls --------------------------------------------------------

    async def acquire(
        self,
        name: str,
        holder: str,
        ttl: float,
        request_id: str = "",
        value: bytes = b"",
    ) -> Lease:
        """Grant `name` to `holder` for `ttl` seconds with a new fencing token.

        Raises LeaseHeld (with the current lease), InvalidLeaseRequest, NotLeader,
        Unavailable, OutcomeUnknown (retry with the same request id), RequestIdReused or
        GrantEnded (a retry whose grant has been released or has expired since).
        """
        self._check_keys(name=name, holder=holder, request_id=request_id)
        self._check_ttl(ttl)
        epoch = self._serving_epoch()
        command = Acquire(name, holder, ttl, request_id, epoch, value=value, sent_at=time.time())
        return self._lease_or_raise(name, await self._commit(command))

    async def renew(
        self,
        name: str,
        holder: str,
        token: int,
        request_id: str = "",
        *,
        ttl: float | None = None,
        value: bytes | None = None,
    ) -> Lease:
        """Restart the lease's TTL; the token stays. Raises LeaseNotHeld if it was lost.

        `ttl` replaces the lease's TTL from now on, `value` its published value.
        """
        self._check_keys(name=name, holder=holder, request_id=request_id)
        if ttl is not None:
            self._check_ttl(ttl)
        if ttl is None and value is None:
            lease = self.renew_locally(name, holder, token)
            if lease is not None:
                return lease
        epoch = self._serving_epoch()
        command = Renew(name, holder, token, request_id, epoch, ttl=ttl, value=value)
        return self._lease_or_raise(name, await self._commit(command))

    def renew_locally(self, name: str, holder: str, token: int) -> Lease | None:
        """A plain renewal answered by the serving leader alone, or None: use renew().

        Synchronous, so a KeepAlive stream answers it without a coroutine; a
        renewal it returns has restarted the lease's deadline at its full TTL.

        Safe only while the leader lease holds (leader_lease.py): no other
        leader can have been elected before now, so any later leader applies
        its StartEpoch, and restarts every deadline at full TTL, after this
        renewal was sent (docs/coordinator-timing.md, "Leader-local renewal").
        Anything else (another holder or token, a passed deadline, an Expire in
        flight) goes through the log, which decides and answers it as before.
        """
        transport = self._lease_transport
        if transport is None:
            return None
        # The term is read before the lease and the serving check after it: if
        # this node stepped down (granting a vote) in between, the term moved.
        term = self._raft.raftCurrentTerm
        now = time.monotonic()
        if now >= transport.valid_until(term):
            return None
        with self._leases.lock:
            lease = self._leases.state.leases.get(name)
        if lease is None or lease.holder != holder or lease.token != token:
            return None
        # Never raises: renew() answers why this node cannot serve (NotLeader, ...).
        if self._closed or self._handing_over or not self._is_serving():
            return None
        if self._leases.state.epoch.term != term or self._raft.raftCurrentTerm != term:
            return None
        if not self._deadlines.renew_locally(lease, now):
            return None
        metrics.LOCAL_RENEWALS.inc()
        return lease

    async def release(
        self,
        name: str,
        holder: str,
        token: int,
        request_id: str = "",
    ) -> Lease:
        """Give the lease up; returns it as it was. Raises LeaseNotHeld if it was lost."""
        self._check_keys(name=name, holder=holder, request_id=request_id)
        epoch = self._serving_epoch()
        outcome = await self._commit(Release(name, holder, token, request_id, epoch))
        return self._lease_or_raise(name, outcome)

    # --- reads ----------------------------------------------------------------------

    async def get(self, name: str) -> Lease | None:
        """Linearizable: the read is committed through the log (any node may ask)."""
        self._check_keys(name=name)
        return (await self._commit(GetLease(name))).lease

    async def list(self, prefix: str = "") -> tuple[Lease, ...]:
        """Linearizable, through the log like get()."""
        return (await self._commit(ListLeases(prefix))).leases

    def local_leases(self) -> tuple[Lease, ...]:
        """This replica's view, possibly stale: for status pages, never for decisions."""
        with self._leases.lock:
            return tuple(self._leases.state.leases.values())

    def snapshot(self, prefix: str = "") -> tuple[int, tuple[Lease, ...]]:
        """This replica's revision and the leases held at it, taken together.

        A watch from that revision then misses nothing and repeats nothing.
        """
        with self._leases.lock:
            state = self._leases.state
            leases = tuple(v for k, v in sorted(state.leases.items()) if k.startswith(prefix))
            return state.revision, leases

    async def watch(self, since: int | None = None) -> AsyncIterator[LeaseEvent]:
        """Events after revision `since` (or from now), in order, as this node applies them.

        Raises EventsCompacted when the history no longer reaches back to `since`,
        when this watcher fell WATCH_BACKLOG events behind, or when the node closes.
        """
        watcher = _Watcher(asyncio.get_running_loop())
        with self._leases.lock:
            state = self._leases.state
            backlog = state.events_since(since) if since is not None else ()
            last = since if since is not None else state.revision
            if backlog is not None:
                self._watchers.add(watcher)
        if backlog is None:
            raise EventsCompacted(last)
        try:
            for event in backlog:
                last = event.revision
                yield event
            while True:
                live = await watcher.queue.get()
                if live is None:
                    raise EventsCompacted(last)
                if live.revision > last:  # may also have been in the backlog
                    last = live.revision
                    yield live
        finally:
            with self._leases.lock:
                self._watchers.discard(watcher)

    def require_serving(self) -> None:
        """Raise NotLeader/Unavailable unless this node serves leader-only calls right now."""
        self._serving_epoch()

    def is_open(self) -> bool:
        return not self._closed

    def is_serving(self) -> bool:
        return not self._closed and self._is_serving()

    def has_leader(self) -> bool:
        """This node serves, or follows a leader it is connected to: probes may say SERVING."""
        if self._closed:
            return False
        if self._raft._isLeader():
            return self._is_serving()
        leader = self._raft._getLeader()
        return leader is not None and self._raft.isNodeConnected(leader)

    def remaining(self, name: str) -> float | None:
        """Seconds left on the serving leader's clock; None if it tracks no such lease."""
        deadline = self._deadlines.deadline(name)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def storage_bytes(self) -> int:
        """Journal plus full dump on disk."""
        files = (self.config.journal_file, self.config.dump_file)
        return sum(f.stat().st_size for f in files if f.exists())

    def view_token(self) -> tuple[object, ...]:
        """Equal between two calls only if view() did not change in between.

        For caches of what is built from the view, asked on every renewal: it
        reads the parts view() is made of, without the lock and without building
        a View. A torn read only gives a token that matches no other.
        """
        state = self._leases.state
        return (
            state,
            state.revision,
            state.epoch,
            self._raft.raftCurrentTerm,
            self._raft._getLeader(),
        )

    def view(self) -> View:
        with self._leases.lock:
            state = self._leases.state
            epoch, revision, cluster_id = state.epoch, state.revision, state.cluster_id
        leader = self._raft._getLeader()
        # The epoch names the leader's id and gRPC address once it has committed it;
        # a leader we hear from that has not done so yet is unnamed.
        known = leader is not None and epoch.leader == leader.address
        # Positional: a renewal's answer asks for the view each time (half the cost).
        return View(
            cluster_id,
            self.member_id,
            self._raft.raftCurrentTerm,
            revision,
            epoch.member_id if known else "",
            (epoch.client_address or "") if known else "",
        )

    def status(self) -> NodeStatus:
        raw = self._raft.getStatus()
        leader = raw["leader"]
        with self._leases.lock:
            epoch, revision = self._leases.state.epoch, self._leases.state.revision
        return NodeStatus(
            raft_address=self.address,
            role=_ROLES[raw["state"]],
            term=raw["raft_term"],
            leader=leader.address if leader is not None else None,
            serving=self._is_serving(),
            epoch=epoch,
            revision=revision,
            commit_index=raw["commit_idx"],
            last_applied=raw["last_applied"],
            peers={
                node.address: self._raft.isNodeConnected(node) for node in self._raft.otherNodes
            },
        )

    # --- membership ---------------------------------------------------------------------

    def members(self, pending: Member | None = None) -> tuple[MemberView, ...]:
        """Every voter as this node sees it, sorted by id (then address).

        `pending` names a member whose record is not committed yet.
        """
        with self._leases.lock:
            known = {m.raft_address: m for m in self._leases.state.members.values()}
        if pending is not None:
            known[pending.raft_address] = pending
        leader = self._raft._getLeader()
        contact = self._last_contact()
        now = raft_now()  # pysyncobj's clock, which its answer times are on
        views = []
        for node in [self._raft.selfNode, *self._raft.otherNodes]:
            address = node.address
            member = known.get(address)
            if address == self.address:
                role = _ROLES[self._raft.getStatus()["state"]]
            else:
                role = (
                    Role.LEADER
                    if leader is not None and leader.address == address
                    else Role.FOLLOWER
                )
            last = contact.get(address)
            views.append(
                MemberView(
                    id=member.id if member else "",
                    raft_address=address,
                    grpc_address=member.grpc_address if member else "",
                    role=role,
                    connected=address == self.address or self._raft.isNodeConnected(node),
                    last_contact=None if last is None else max(0.0, now - last),
                )
            )
        return tuple(sorted(views, key=lambda m: (m.id or "~", m.raft_address)))

    async def add_member(self, member: Member) -> tuple[MemberView, ...]:
        """Add a voter (leader only), then record its id and gRPC address.

        Start the new node afterwards with the returned members as its peers.
        """
        async with self._change_membership():
            current = self.members()
            if any(m.id == member.id or m.raft_address == member.raft_address for m in current):
                raise MemberExists(f"member {member.id} ({member.raft_address}) already exists")
            check_add(len(current), len(self._live_voters()))
            if len(current) > 1:
                await self._change_cluster(self._raft.addNodeToCluster, member.raft_address)
                await self._commit(RegisterMember(member))
                return self.members()
            # A lone node's change can only commit once the new node runs and
            # acknowledges it, and the new node needs this answer to start: so
            # answer as soon as the leader has taken the new configuration on.
            change = self._change_cluster(self._raft.addNodeToCluster, member.raft_address)
            _in_background(change)
            await self._until_voter(member.raft_address)
            _in_background(self._commit(RegisterMember(member)))
        return self.members(pending=member)

    async def _until_voter(self, raft_address: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMMIT_TIMEOUT
        while loop.time() < deadline:
            if raft_address in {n.address for n in self._raft.otherNodes}:
                return
            await asyncio.sleep(0.005)
        raise OutcomeUnknown("the new configuration was not taken on in time")

    async def remove_member(self, member_id: str) -> tuple[MemberView, ...]:
        """Remove a voter (leader only). The leader itself is removed by handing over first:
        this raises NotLeader naming the new leader, where the caller retries."""
        async with self._change_membership():
            current = self.members()
            target = next((m for m in current if m.id == member_id), None)
            if target is None:
                raise UnknownMember(f"no member with id {member_id!r}")
            live_after = len(self._live_voters() - {target.raft_address})
            check_remove(len(current), live_after)
            if target.raft_address == self.address:
                # pysyncobj cannot remove its own leader: hand over, let the new one do it.
                await self.transfer_leadership()
                raise self._not_leader()
            await self._change_cluster(self._raft.removeNodeFromCluster, target.raft_address)
            await self._commit(ForgetMember(member_id))
        return self.members()

    async def transfer_leadership(
        self, target_raft_address: str | None = None, within: float = 3.0
    ) -> str:
        """Hand leadership to a caught-up voter (Raft's TimeoutNow) and wait until it serves.

        Returns the new leader's Raft address. Meanwhile this node accepts no new
        command (callers get Unavailable and retry, then find the new leader), so
        the target catches up in one round trip even under a steady stream of
        writes. pysyncobj denies the transfer while the target lags the leader's
        log, so it is retried until `within` seconds pass.
        """
        self.require_serving()
        others = {n.address for n in self._raft.otherNodes}
        if target_raft_address is not None and target_raft_address not in others:
            raise UnknownMember(f"{target_raft_address} is not another member")
        if not others:
            raise TransferFailed("no other member to hand leadership to")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        self._handing_over = True
        try:
            while loop.time() < deadline:
                sent: asyncio.Future[int] = loop.create_future()

                def done(_result: Any, error: int, sent: asyncio.Future[int] = sent) -> None:
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_settle_once, sent, error)

                self._on_tick_thread(
                    functools.partial(self._send_timeout_now, target_raft_address, done)
                )
                if await sent == FAIL_REASON.SUCCESS:
                    leader = await self._wait_for_other_leader(deadline)
                    if leader is not None:
                        return leader
                elif not self._raft._isLeader():
                    raise self._not_leader()
                await asyncio.sleep(0.002)  # the target is catching up: its next ack will do
        finally:
            self._handing_over = False
        raise TransferFailed(f"no new leader within {within} s")

    def _send_timeout_now(self, target: str | None, done: Callable[[Any, int], None]) -> None:
        """Tick thread: pysyncobj's transfer, once every command accepted before it is logged.

        A command still waiting for its batch would be appended after TimeoutNow,
        making the old leader's log longer than the target's: the others would
        then refuse the target their votes and the transfer would end in an
        ordinary election. (Batches proposed by the previous tick are in the log:
        pysyncobj appends queued commands before it runs the tick callbacks.)
        """
        if not self._proposals.empty():
            done(None, FAIL_REASON.REQUEST_DENIED)
            return
        self._raft.transferLeadership(target, done)

    async def _wait_for_other_leader(self, deadline: float) -> str | None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            leader = self._raft._getLeader()
            if leader is not None and leader.address != self.address:
                return str(leader.address)
            await asyncio.sleep(0.002)
        return None

    def _live_voters(self) -> set[str]:
        """Raft addresses of the voters the leader heard from within an election timeout."""
        limit = self.config.timing.election_max
        now = raft_now()  # pysyncobj's clock, which its answer times are on
        heard = {a for a, at in self._last_contact().items() if now - at <= limit}
        return heard | {self.address}

    def _last_contact(self) -> dict[str, float]:
        # pysyncobj keeps, on the leader only, when each follower last answered
        # (on its clock: compare with raft_now(), never time.monotonic()).
        # Private, but it is exactly what "live" means here; a connection alone is
        # not (a SIGSTOPped process keeps its sockets open).
        if not self._raft._isLeader():
            return {}
        times = dict(getattr(self._raft, "_SyncObj__lastResponseTime", {}))
        return {node.address: at for node, at in times.items()}

    @contextlib.asynccontextmanager
    async def _change_membership(self) -> AsyncIterator[None]:
        self.require_serving()
        if self._membership_lock.locked():
            raise MembershipChangeInProgress("another membership change is in progress")
        async with self._membership_lock:
            yield

    async def _change_cluster(self, change: Callable[..., None], raft_address: str) -> None:
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[int] = loop.create_future()

        def done(_result: Any, error: int) -> None:  # a membership entry has no result
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_once, committed, error)

        change(raft_address, callback=done)
        try:
            error = await asyncio.wait_for(committed, COMMIT_TIMEOUT)
        except TimeoutError:
            raise OutcomeUnknown("membership change not committed in time") from None
        if error == FAIL_REASON.REQUEST_DENIED:
            # pysyncobj denies a change while the previous one is not applied yet.
            raise MembershipChangeInProgress("the previous membership change is not applied yet")
        if error in _NOT_COMMITTED:
            raise Unavailable(f"membership change not committed (pysyncobj reason {error})")
        if error != FAIL_REASON.SUCCESS:
            raise OutcomeUnknown(f"membership change outcome unknown (pysyncobj reason {error})")

    def _on_tick_thread(self, function: Callable[[], None]) -> None:
        self._tick_calls.put(function)
        if self._tick_notifier is not None:
            self._tick_notifier.notify()

    def _wake_for_proposals(self) -> None:
        # Race-free with _propose_waiting, which clears the flag *before* taking
        # the commands: one queued before the clear is taken, one queued after
        # wakes the thread again.
        if not self._wake_requested and self._tick_notifier is not None:
            self._wake_requested = True
            self._tick_notifier.notify()

    def close(self) -> None:
        """Stop the tick thread, flush and close the journal, end watches and pending calls."""
        if self._closed:
            return
        self._closed = True
        metrics.NODE.detach(self)
        self._raft.destroy_synchronous()
        if not self._snapshots.finish(timeout=DUMP_WAIT_SECONDS):
            log.warning("raft full dump still being written at close", node=self.address)
        with self._leases.lock:
            for watcher in self._watchers:
                watcher.push(None)
        with self._pending_lock:
            for pending in self._pending:
                pending.settle(None, FAIL_REASON.REQUEST_DENIED)
        self._release_resources()
        log.info("raft node closed", node=self.address)

    # --- proposing and waiting --------------------------------------------------------

    def _check_ttl(self, ttl: float) -> None:
        if not self.config.timing.min_lease_ttl <= ttl <= MAX_LEASE_TTL:
            raise InvalidLeaseRequest(
                f"ttl must be within [{self.config.timing.min_lease_ttl}, {MAX_LEASE_TTL}] s"
            )

    def _is_serving(self) -> bool:
        epoch = self._leases.state.epoch
        return (
            self._raft._isLeader()
            and epoch.term == self._raft.raftCurrentTerm
            and epoch.leader == self.address
        )

    def _serving_epoch(self) -> int:
        if self._closed:
            raise Unavailable("node is closed")
        if self._handing_over:
            raise Unavailable("handing leadership over to another member; retry shortly")
        if self._is_serving():
            return self._leases.state.epoch.term
        if self._raft._isLeader():
            raise Unavailable("elected, committing the new epoch; retry shortly")
        raise self._not_leader()

    def _not_leader(self) -> NotLeader:
        leader = self._raft._getLeader()
        address = leader.address if leader is not None else None
        epoch = self._leases.state.epoch
        client = epoch.client_address if address is not None and epoch.leader == address else None
        return NotLeader(address, client)

    async def _commit(self, command: Command) -> Outcome:
        """Propose `command` and wait until it is applied here.

        The command joins the next group commit (`_propose_waiting`). Callers
        bound the wait with their own deadline (asyncio.timeout); this node
        gives up after COMMIT_TIMEOUT in any case so nothing waits forever.
        """
        pending = _Pending(asyncio.get_running_loop())
        with self._pending_lock:
            self._pending.add(pending)
        try:
            self._proposals.put((command, pending))
            self._wake_for_proposals()
            async with asyncio.timeout(COMMIT_TIMEOUT):  # cheaper than wait_for: no task
                return await pending.future
        except TimeoutError:
            raise OutcomeUnknown(f"not committed within {COMMIT_TIMEOUT} s; retry") from None
        finally:
            with self._pending_lock:
                self._pending.discard(pending)

    def _lease_or_raise(self, name: str, outcome: Outcome) -> Lease:
        match outcome.rejection:
            case None:
                assert outcome.lease is not None
                return outcome.lease
            case Rejection.HELD:
                assert outcome.lease is not None
                raise LeaseHeld(outcome.lease)
            case Rejection.NOT_HELD:
                raise LeaseNotHeld(name, outcome.lease)
            case Rejection.STALE_EPOCH:
                # Leadership changed between our check and the commit: nothing was applied.
                raise self._not_leader()
            case Rejection.GRANT_ENDED:
                raise GrantEnded(name, outcome.lease)
            case Rejection.REQUEST_ID_REUSED:
                raise RequestIdReused("request id was already used for another request")
            case Rejection.INVALID:
                raise InvalidLeaseRequest("invalid lease request")

    @staticmethod
    def _check_keys(**keys: str) -> None:
        for field, value in keys.items():
            if len(value) > MAX_KEY_LENGTH:
                raise InvalidLeaseRequest(f"{field} is longer than {MAX_KEY_LENGTH} characters")
            if field != "request_id" and not value:
                raise InvalidLeaseRequest(f"{field} must not be empty")

    # --- tick thread ------------------------------------------------------------------

    def _on_tick(self) -> None:
        # Tick calls first: a transfer must see the log before this tick's batch.
        while True:
            try:
                function = self._tick_calls.get_nowait()
            except queue.Empty:
                break
            _never_raise(function)
        _never_raise(self._propose_waiting)
        now = time.monotonic()
        _never_raise(self._tick, now)
        # Apart from _tick: whatever happens in metrics and logs, expiry goes on.
        _never_raise(self._watch_raft, now)

    def _watch_raft(self, now: float) -> None:
        raft = self._raft
        leader = raft._getLeader()
        # pysyncobj's role without getStatus(), which builds a whole dict on every wake-up.
        role = _ROLES[getattr(raft, "_SyncObj__raftState", 0)]
        self._watch.on_tick(now, raft.raftCurrentTerm, role, leader.address if leader else None)

    def _propose_waiting(self) -> None:
        """Group commit: the commands waiting now go into one log entry.

        pysyncobj makes each proposal its own entry, sends each entry to each
        follower as its own pickled, compressed and encrypted message, and has
        each acknowledged on its own. So one batch commits at a time, and the
        commands that arrive meanwhile form the next: batches grow with the
        load, and a lone command waits for no one (see GROUP_COMMIT_DELAY for
        concurrent ones). A batch that has not committed within a heartbeat
        (its answer may be lost with a leader change) no longer holds the next
        one back.
        """
        in_flight = self._batch_in_flight
        if in_flight is not None and time.monotonic() - in_flight[1] < self.config.timing.heartbeat:
            return  # applying that batch runs this again, on this thread
        if self._proposals.empty():
            return
        if len(self._pending) > 1 and self._proposals.qsize() < MAX_BATCH:
            time.sleep(GROUP_COMMIT_DELAY)
        self._wake_requested = False
        batch: list[tuple[Command, _Pending]] = []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._proposals.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        number = next(self._batch_numbers)
        proposed_at = time.monotonic()
        self._batch_in_flight = (number, proposed_at)
        pendings = [pending for _, pending in batch]

        def done(result: Any, error: int) -> None:
            if self._batch_in_flight is not None and self._batch_in_flight[0] == number:
                self._batch_in_flight = None
            # A tuple of outcomes when applied; None when it failed (then error says why).
            ok = isinstance(result, tuple) and len(result) == len(pendings)
            if ok:
                metrics.APPLY_SECONDS.observe(time.monotonic() - proposed_at)
            outcomes = result if ok else (None,) * len(pendings)
            _never_raise(_settle_all, pendings, outcomes, error)

        self._leases.apply(Batch(tuple(command for command, _ in batch)), callback=done)

    def _tick(self, now: float) -> None:
        gap = now - self._last_tick if self._last_tick is not None else 0.0
        self._last_tick = now
        raft = self._raft
        if self._fast_connect and raft._getLeader() is not None:
            self._fast_connect = False
            self._syncobj_conf.connectionRetryTime = self.config.timing.connection_retry
        self._register_self(now)
        if not raft._isLeader():
            return
        term = raft.raftCurrentTerm
        epoch = self._leases.state.epoch
        if epoch.term < term:
            self._propose_epoch(term)
            return
        if epoch.term != term or epoch.leader != self.address:
            return
        if gap > self.config.timing.pause_threshold:
            # We may have been stopped long enough for others to elect a new
            # leader and renew leases we never heard of: do not act on our clock.
            log.warning(
                "tick gap, restarting lease deadlines", node=self.address, gap=round(gap, 3)
            )
            self._deadlines.restart_all(self.local_leases(), now)
            return
        # Handing over: an expiry can wait (it is never early, only late), and
        # it would lengthen the log the target must match. Otherwise deadlines
        # are asked once per tick period: this runs on every wake-up of the
        # tick thread (each message, each batch); due() scans all leases only
        # once the earliest deadline has come.
        if self._handing_over or now < self._next_expiry_scan:
            return
        self._next_expiry_scan = now + self.config.timing.tick
        due = self._deadlines.due(now)
        for start in range(0, len(due), MAX_BATCH):
            self._propose_expiries(due[start : start + MAX_BATCH], term)

    def _propose_epoch(self, term: int) -> None:
        if self._epoch_proposed == term:
            return
        self._epoch_proposed = term

        def done(outcome: Outcome | None, error: int) -> None:
            if error != FAIL_REASON.SUCCESS or outcome is None or not outcome.ok:
                self._epoch_proposed = None  # proposed again next tick if still leader

        epoch = Epoch(term, self.address, self.config.client_address, self.member_id)
        # Only the very first epoch's id is adopted: it names the cluster for good.
        start = StartEpoch(epoch, cluster_id=uuid.uuid4().hex)
        self._leases.apply(start, callback=_guarded(done))

    def _register_self(self, now: float) -> None:
        """Record our id and gRPC address in the replicated state once a leader is known.

        Proposed through any node (pysyncobj forwards to the leader); retried at
        most once a second until the state holds exactly our record.
        """
        me = Member(self.member_id, self.address, self.config.client_address or "")
        if self._leases.state.members.get(me.id) == me or self._raft._getLeader() is None:
            return
        if self._registering_since is not None and now - self._registering_since < 1.0:
            return
        self._registering_since = now

        def done(_outcome: Outcome | None, _error: int) -> None:
            self._registering_since = None

        self._leases.apply(RegisterMember(me), callback=_guarded(done))

    def _propose_expiries(self, due: Sequence[Due], term: int) -> None:
        """Expire the leases of one scan as one log entry (a Batch), not one entry each.

        Each Expire is still applied on its own, with its own checks, revision
        and event. One entry per lease made a mass expiry (clients gone at
        once) thousands of Raft rounds that starved the calls beside them
        (docs/coordinator-timing.md, "Expiry is scanned once per tick period").
        """

        def done(_outcome: Any, _error: int) -> None:
            for lease in due:
                self._deadlines.resolved(lease)

        log.info(
            "lease deadlines passed, proposing expiry",
            leases=[f"{lease.name}@{lease.token}" for lease in due],
        )
        expires = tuple(Expire(lease.name, lease.token, lease.revision, term) for lease in due)
        self._leases.apply(Batch(expires), callback=_guarded(done))

    def _on_applied(
        self, command: Command, outcome: Outcome, events: tuple[LeaseEvent, ...]
    ) -> None:
        # May run during SyncObj's constructor (journal replay): no self._raft here.
        now = time.monotonic()
        if isinstance(command, StartEpoch) and command.epoch.leader == self.address and outcome.ok:
            # Etcd's rule: a new leader gives every lease a full TTL from its
            # election, so no lease expires early whatever happened before.
            self._deadlines.restart_all(self._leases.state.leases.values(), now)
            # An epoch of ours applied again (a restart replaying its journal, or
            # catching up as a follower) is history, not news for the operator.
            raft = getattr(self, "_raft", None)
            if raft is not None and raft._isLeader() and raft.raftCurrentTerm == command.epoch.term:
                log.info("serving as leader", node=self.address, revision=outcome.revision)
        for event in events:
            self._deadlines.on_event(event, now)
            for watcher in self._watchers:
                watcher.push(event)
            metrics.EVENTS[event.kind].inc()

    def _on_state_changed(self, old: int, new: int) -> None:
        """pysyncobj's onStateChanged, on the tick thread (perhaps before self._raft is set)."""
        raft = getattr(self, "_raft", None)
        term = raft.raftCurrentTerm if raft is not None else 0
        _never_raise(self._watch.on_state_changed, _ROLES[old], _ROLES[new], term)

    def _on_replaced(self) -> None:
        self._deadlines.restart_all(self._leases.state.leases.values(), time.monotonic())

    def _release_resources(self) -> None:
        raft_logging.uninstall(self._log_fields)
        os.close(self._lock_fd)


class _Pending:
    """One proposal awaited on an event loop; settled from the tick thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Outcome] = loop.create_future()

    def settle(self, outcome: Outcome | None, error: int) -> None:
        _settle_all([self], [outcome], error)

    def settle_here(self, outcome: Outcome | None, error: int) -> None:
        """Runs on the pending's own event loop."""
        if self.future.done():
            return
        if error == FAIL_REASON.SUCCESS and outcome is not None:
            self.future.set_result(outcome)
        elif error in _NOT_COMMITTED:
            self.future.set_exception(Unavailable(f"not committed (pysyncobj reason {error})"))
        else:
            self.future.set_exception(OutcomeUnknown(f"outcome unknown (pysyncobj reason {error})"))


def _settle_all(
    pendings: Sequence[_Pending], outcomes: Sequence[Outcome | None], error: int
) -> None:
    """Settle proposals from the tick thread, with one wake-up per event loop, not per call."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Outcome | None]]] = {}
    for pending, outcome in zip(pendings, outcomes, strict=False):
        by_loop.setdefault(pending.loop, []).append((pending, outcome))
    for loop, settled in by_loop.items():
        # pysyncobj applies an entry, then calls back, then counts it applied: a
        # callback that raised would make it apply the entry again.
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_here, settled, error)


def _settle_here(settled: list[tuple[_Pending, Outcome | None]], error: int) -> None:
    for pending, outcome in settled:
        pending.settle_here(outcome, error)


def _in_background(awaitable: Coroutine[Any, Any, Any]) -> None:
    """Run a proposal nobody waits for; its failure is only logged."""

    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.warning("background proposal failed", error=str(task.exception()))
        _background.discard(task)

    task = asyncio.ensure_future(awaitable)
    _background.add(task)
    task.add_done_callback(done)


_background: set[asyncio.Task[Any]] = set()  # strong references until done


def _settle_once(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)


class _Watcher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[LeaseEvent | None] = asyncio.Queue()

    def push(self, event: LeaseEvent | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed
            self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: LeaseEvent | None) -> None:
        # A watcher too slow to keep up is ended rather than buffered without bound.
        self.queue.put_nowait(None if self.queue.qsize() >= WATCH_BACKLOG else event)


def _never_raise(function: Callable[..., None], *args: Any) -> None:
    """Run a hook on pysyncobj's tick thread, where an exception would disrupt applying."""
    try:
        function(*args)
    except Exception:
        log.exception("raft hook failed", hook=getattr(function, "__name__", repr(function)))


def _guarded(callback: Callable[[Outcome | None, int], None]) -> Callable[[Any, int], None]:
    def guarded(outcome: Any, error: int) -> None:
        _never_raise(callback, outcome, error)

    return guarded


def _lock_exclusively(path: os.PathLike[str] | str) -> int:
    """Refuse a second process on the same journal: two writers would corrupt it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CoordinatorError(f"{path} is locked by another running node") from None
    return fd


def main() -> None:
    """`python -m marquee_coordinator.raft_node`: a bare Raft node (no gRPC), set by environment."""
    from marquee_coordinator.raft_config import NodeConfig
    from marquee_coordinator.settings import CoordinatorSettings
    from marquee_platform.logging import configure_logging
    from marquee_platform.settings import load_settings

    settings = load_settings(CoordinatorSettings)
    configure_logging("coordinator", settings.log_level, settings.log_format)
    node = LeaseNode(NodeConfig.from_settings(settings))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(5.0):
        status = node.status()
        log.info("status", role=status.role, term=status.term, leader=status.leader)
    node.close()


if __name__ == "__main__":
    main()
