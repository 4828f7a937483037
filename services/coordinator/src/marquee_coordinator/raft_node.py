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
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConsumer, SyncObjException, replicated

from marquee_coordinator import raft_logging
from marquee_coordinator.errors import (
    CoordinatorError,
    EventsCompacted,
    InvalidLeaseRequest,
    LeaseHeld,
    LeaseNotHeld,
    NotLeader,
    OutcomeUnknown,
    RequestIdReused,
    Unavailable,
)
from marquee_coordinator.expiry import Deadlines, Due
from marquee_coordinator.raft_config import NodeConfig
from marquee_coordinator.state import (
    Acquire,
    Command,
    Epoch,
    Expire,
    GetLease,
    Lease,
    LeaseEvent,
    LeaseState,
    ListLeases,
    Outcome,
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

# Results of a proposal that tell us nothing was committed.
_NOT_COMMITTED = {
    FAIL_REASON.QUEUE_FULL,
    FAIL_REASON.MISSING_LEADER,
    FAIL_REASON.DISCARDED,
    FAIL_REASON.NOT_LEADER,
    FAIL_REASON.REQUEST_DENIED,
}

ApplyListener = Callable[[Command, Outcome, tuple[LeaseEvent, ...]], None]


class Role(StrEnum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


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
    def apply(self, command: Command) -> Outcome:
        with self.lock:
            outcome, events = self.state.apply(command)
            # Listeners run under the lock so a watcher registering meanwhile
            # sees each event either in the history or in its queue.
            _never_raise(self._on_applied, command, outcome, events)
        return outcome

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
        self._closed = False
        config.node_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_exclusively(config.lock_file)
        # Tick thread only:
        self._deadlines = Deadlines()
        self._last_tick: float | None = None
        self._epoch_proposed: int | None = None
        # Guarded by self._leases.lock:
        self._watchers: set[_Watcher] = set()
        self._pending: set[_Pending] = set()
        self._pending_lock = threading.Lock()

        self._log_fields = raft_logging.install(config.raft_address)
        self._leases = ReplicatedLeases(self._on_applied, self._on_replaced)
        if not config.cluster_secret:
            log.warning("raft transport is unauthenticated (dev profile only)", node=self.address)
        try:
            self._raft = SyncObj(
                config.raft_address,
                list(config.peers),
                conf=config.syncobj_conf(bindAddress=config.raft_address),
                consumers=[self._leases],
            )
            self._raft.waitBinded()
        except SyncObjException as exc:
            self._release_resources()
            raise Unavailable(f"cannot bind the Raft port {config.raft_address}: {exc}") from exc
        self._raft.addOnTickCallback(self._on_tick)
        log.info(
            "raft node started",
            node=self.address,
            peers=list(config.peers),
            data_dir=str(config.node_dir),
            authenticated=bool(config.cluster_secret),
        )

    # --- leader-only calls --------------------------------------------------------

    async def acquire(
        self,
        name: str,
        holder: str,
        ttl: float,
        request_id: str = "",
    ) -> Lease:
        """Grant `name` to `holder` for `ttl` seconds with a new fencing token.

        Raises LeaseHeld (with the current lease), InvalidLeaseRequest, NotLeader,
        Unavailable, OutcomeUnknown (retry with the same request id) or RequestIdReused.
        """
        self._check_keys(name=name, holder=holder, request_id=request_id)
        if not self.config.timing.min_lease_ttl <= ttl <= MAX_LEASE_TTL:
            raise InvalidLeaseRequest(
                f"ttl must be within [{self.config.timing.min_lease_ttl}, {MAX_LEASE_TTL}] s"
            )
        epoch = self._serving_epoch()
        outcome = await self._commit(Acquire(name, holder, ttl, request_id, epoch))
        return self._lease_or_raise(name, outcome)

    async def renew(
        self,
        name: str,
        holder: str,
        token: int,
        request_id: str = "",
    ) -> Lease:
        """Restart the lease's TTL; the token stays. Raises LeaseNotHeld if it was lost."""
        self._check_keys(name=name, holder=holder, request_id=request_id)
        epoch = self._serving_epoch()
        outcome = await self._commit(Renew(name, holder, token, request_id, epoch))
        return self._lease_or_raise(name, outcome)

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

    def close(self) -> None:
        """Stop the tick thread, flush and close the journal, end watches and pending calls."""
        if self._closed:
            return
        self._closed = True
        self._raft.destroy_synchronous()
        with self._leases.lock:
            for watcher in self._watchers:
                watcher.push(None)
        with self._pending_lock:
            for pending in self._pending:
                pending.settle(None, FAIL_REASON.REQUEST_DENIED)
        self._release_resources()
        log.info("raft node closed", node=self.address)

    # --- proposing and waiting --------------------------------------------------------

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

        Callers bound the wait with their own deadline (asyncio.timeout); this
        node gives up after COMMIT_TIMEOUT in any case so nothing waits forever.
        """
        pending = _Pending(asyncio.get_running_loop())
        with self._pending_lock:
            self._pending.add(pending)
        try:
            self._leases.apply(command, callback=pending.settle)
            return await asyncio.wait_for(pending.future, COMMIT_TIMEOUT)
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
        _never_raise(self._tick, time.monotonic())

    def _tick(self, now: float) -> None:
        gap = now - self._last_tick if self._last_tick is not None else 0.0
        self._last_tick = now
        raft = self._raft
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
        for due in self._deadlines.due(now):
            self._propose_expire(due, term)

    def _propose_epoch(self, term: int) -> None:
        if self._epoch_proposed == term:
            return
        self._epoch_proposed = term

        def done(outcome: Outcome | None, error: int) -> None:
            if error != FAIL_REASON.SUCCESS or outcome is None or not outcome.ok:
                self._epoch_proposed = None  # proposed again next tick if still leader

        epoch = Epoch(term, self.address, self.config.client_address)
        self._leases.apply(StartEpoch(epoch), callback=_guarded(done))

    def _propose_expire(self, due: Due, term: int) -> None:
        def done(_outcome: Outcome | None, _error: int) -> None:
            self._deadlines.resolved(due)

        log.info("lease deadline passed, proposing expiry", lease=due.name, token=due.token)
        expire = Expire(due.name, due.token, due.revision, term)
        self._leases.apply(expire, callback=_guarded(done))

    def _on_applied(
        self, command: Command, outcome: Outcome, events: tuple[LeaseEvent, ...]
    ) -> None:
        # May run during SyncObj's constructor (journal replay): no self._raft here.
        now = time.monotonic()
        ours = isinstance(command, StartEpoch) and command.epoch.leader == self.address
        if ours and outcome.ok:
            # Etcd's rule: a new leader gives every lease a full TTL from its
            # election, so no lease expires early whatever happened before.
            self._deadlines.restart_all(self._leases.state.leases.values(), now)
            log.info("serving as leader", node=self.address, revision=outcome.revision)
        for event in events:
            self._deadlines.on_event(event, now)
            for watcher in self._watchers:
                watcher.push(event)

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
        # pysyncobj applies an entry, then calls back, then counts it applied: a
        # callback that raised would make it apply the entry again.
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._settle, outcome, error)

    def _settle(self, outcome: Outcome | None, error: int) -> None:
        if self.future.done():
            return
        if error == FAIL_REASON.SUCCESS and outcome is not None:
            self.future.set_result(outcome)
        elif error in _NOT_COMMITTED:
            self.future.set_exception(Unavailable(f"not committed (pysyncobj reason {error})"))
        else:
            self.future.set_exception(OutcomeUnknown(f"outcome unknown (pysyncobj reason {error})"))


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
