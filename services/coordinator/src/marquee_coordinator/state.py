"""The replicated lease state machine: pure, deterministic, no clocks, no I/O.

Every replica applies the same commands in log order and must reach the same
state, so nothing here may read a clock, a random source or the node's role.
Time enters only through commands: the leader decides that a lease has run out
on its own monotonic clock and commits `Expire`, which this machine re-validates
(K-2, K-7). A lease stores its TTL ("remaining TTL at commit"), never a wall-
clock deadline, so no two machines ever have to agree on the time.

`apply` never raises for a well-formed command: an exception inside pysyncobj's
apply loop would be retried forever and wedge the node. Refusals are returned
as `Outcome.rejection`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DEDUPE_CAPACITY = 10_000
HISTORY_CAPACITY = 1_000


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    holder: str
    # Fencing token: strictly increases per name, across release, expiry,
    # failover and full restarts (the counter lives in the replicated state).
    token: int
    ttl: float
    # Revision of the last acquire or renew: an Expire decided before a renew
    # names an older revision and is refused.
    revision: int
    # Revision of the grant itself (unchanged by renewals).
    acquired_revision: int = 0
    # Published by the holder, e.g. an election leader's address.
    value: bytes = b""
    # The granting leader's wall clock: informational only, never compared.
    acquired_at: float = 0.0


class EventKind(StrEnum):
    ACQUIRED = "acquired"
    RENEWED = "renewed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    revision: int
    kind: EventKind
    lease: Lease


@dataclass(frozen=True, slots=True)
class Epoch:
    """The leadership a command was decided under: the Raft term and its leader."""

    term: int
    leader: str
    # Where the leader's clients should go (its gRPC address), told to followers.
    client_address: str | None = None
    member_id: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member's identity and addresses (the voter set itself is pysyncobj's)."""

    id: str
    raft_address: str
    grpc_address: str


class Rejection(StrEnum):
    HELD = "held"  # acquire: someone holds the name (see Outcome.lease)
    NOT_HELD = "not_held"  # renew/release/expire: no such lease, or holder/token/revision differ
    STALE_EPOCH = "stale_epoch"  # decided under a leadership that has since been replaced
    # the same (name, holder, request id) was seen with another command (kind or arguments)
    REQUEST_ID_REUSED = "request_id_reused"
    # acquire retried with the id of a grant that has since been released or expired
    GRANT_ENDED = "grant_ended"
    INVALID = "invalid"  # malformed arguments


# --- commands: what the log carries -------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartEpoch:
    """Committed by each new leader before it serves anything (see docs/coordinator-timing.md)."""

    epoch: Epoch
    # Adopted by the state only once, from the very first epoch: the cluster's identity.
    cluster_id: str = ""


def _unpickle_command(self: Any, state: Sequence[object]) -> None:
    """Unpickle a client command, also one journaled before `scoped_id` existed.

    A slotted dataclass pickles as the list of its field values in order. An
    entry written before request ids were scoped lacks the last one and gets
    `scoped_id=False`: replaying an old journal then reaches exactly the state
    the old code reached, so a node that replays it and one that loads the old
    full dump agree. (Old code reading a new entry ignores the extra value.)
    """
    fields = dataclasses.fields(self)
    values = list(state)
    if len(values) == len(fields) - 1:
        values.append(False)
    for field, value in zip(fields, values, strict=True):
        object.__setattr__(self, field.name, value)


@dataclass(frozen=True, slots=True)
class Acquire:
    name: str
    holder: str
    ttl: float
    request_id: str
    epoch: int
    value: bytes = b""
    # The leader's wall clock when it accepted the call; informational, and left
    # out of the dedupe fingerprint so a retry is recognised.
    sent_at: float = 0.0
    # The request id is remembered per (name, holder, request id), as lease.proto
    # says; False only for entries journaled before (one cluster-wide namespace).
    # Must stay the last field (see _unpickle_command).
    scoped_id: bool = True

    __setstate__ = _unpickle_command


@dataclass(frozen=True, slots=True)
class Renew:
    name: str
    holder: str
    token: int
    request_id: str
    epoch: int
    ttl: float | None = None  # None keeps the lease's TTL
    value: bytes | None = None  # None keeps the published value
    scoped_id: bool = True  # as Acquire.scoped_id; the last field

    __setstate__ = _unpickle_command


@dataclass(frozen=True, slots=True)
class Release:
    name: str
    holder: str
    token: int
    request_id: str
    epoch: int
    scoped_id: bool = True  # as Acquire.scoped_id; the last field

    __setstate__ = _unpickle_command


@dataclass(frozen=True, slots=True)
class Expire:
    """The leader's decision that `name` ran out; only applies to the exact lease it saw."""

    name: str
    token: int
    revision: int
    epoch: int


@dataclass(frozen=True, slots=True)
class RegisterMember:
    """Records a member's id and addresses; replaces any record of the same id or Raft address."""

    member: Member


@dataclass(frozen=True, slots=True)
class ForgetMember:
    member_id: str


@dataclass(frozen=True, slots=True)
class GetLease:
    """A read through the log: its answer is linearizable, unlike a replica's local state."""

    name: str


@dataclass(frozen=True, slots=True)
class ListLeases:
    prefix: str = ""


ClientCommand = Acquire | Renew | Release
DedupeKey = tuple[str, str, str] | str
Command = (
    StartEpoch
    | Acquire
    | Renew
    | Release
    | Expire
    | GetLease
    | ListLeases
    | RegisterMember
    | ForgetMember
)


@dataclass(frozen=True, slots=True)
class Batch:
    """Several commands replicated as one log entry (group commit).

    `ReplicatedLeases.apply` applies them in order through `LeaseState.apply`,
    each exactly as if it had its own consecutive entry: its own epoch check,
    dedupe, revision and events. Only the Raft cost is shared: one log entry,
    one message to each follower and one acknowledgement back.
    """

    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    revision: int  # the state's revision after the command
    lease: Lease | None = None  # the lease produced, found, or standing in the way
    leases: tuple[Lease, ...] = ()  # ListLeases only
    rejection: Rejection | None = None
    replayed: bool = False  # answered from the dedupe table: nothing was applied again

    @property
    def ok(self) -> bool:
        return self.rejection is None


class LeaseState:
    """All replicated coordinator state; pickled whole into pysyncobj's full dump."""

    def __init__(
        self, *, dedupe_capacity: int = DEDUPE_CAPACITY, history_capacity: int = HISTORY_CAPACITY
    ) -> None:
        self.epoch = Epoch(term=0, leader="")
        self.cluster_id = ""
        self.revision = 0
        self.members: dict[str, Member] = {}
        self.leases: dict[str, Lease] = {}
        # Last token issued per name. Never pruned: it is what makes tokens grow
        # across release and expiry; one int per distinct name ever used.
        self.tokens: dict[str, int] = {}
        # (name, holder, request id) -> (the command without its epoch, its outcome),
        # oldest first. Entries of commands journaled before request ids were scoped
        # are keyed by the request id alone (see Acquire.scoped_id).
        self.requests: OrderedDict[DedupeKey, tuple[ClientCommand, Outcome]] = OrderedDict()
        self.dedupe_capacity = dedupe_capacity
        self.history: deque[LeaseEvent] = deque(maxlen=history_capacity)

    def snapshot(self) -> LeaseState:
        """A copy that later commands do not change, for writing the full dump meanwhile.

        Only the containers are copied: everything in them is immutable.
        """
        copied = copy.copy(self)
        copied.members = dict(self.members)
        copied.leases = dict(self.leases)
        copied.tokens = dict(self.tokens)
        copied.requests = OrderedDict(self.requests)
        copied.history = deque(self.history, maxlen=self.history.maxlen)
        return copied

    def apply(self, command: Command) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        """Apply one committed command; returns its outcome and the events it caused."""
        match command:
            case StartEpoch():
                return self._start_epoch(command), ()
            case Acquire() | Renew() | Release():
                return self._client_command(command)
            case Expire():
                return self._expire(command)
            case GetLease(name=name):
                return Outcome(self.revision, lease=self.leases.get(name)), ()
            case ListLeases(prefix=prefix):
                found = tuple(v for k, v in sorted(self.leases.items()) if k.startswith(prefix))
                return Outcome(self.revision, leases=found), ()
            case RegisterMember(member=member):
                for other in [
                    m for m in self.members.values() if m.raft_address == member.raft_address
                ]:
                    del self.members[other.id]
                self.members[member.id] = member
                return Outcome(self.revision), ()
            case ForgetMember(member_id=member_id):
                self.members.pop(member_id, None)
                return Outcome(self.revision), ()

    def events_since(self, revision: int) -> tuple[LeaseEvent, ...] | None:
        """Retained events after `revision`, or None if some were already dropped."""
        if self.history and self.history[0].revision > revision + 1:
            return None
        if not self.history and self.revision > revision:
            return None
        return tuple(e for e in self.history if e.revision > revision)

    # --- internals -------------------------------------------------------------

    def _start_epoch(self, command: StartEpoch) -> Outcome:
        # A leader of an older term can only get here if its entry was replicated
        # before the newer leader's; refusing it keeps the epoch monotonic.
        if command.epoch.term <= self.epoch.term:
            return self._reject(Rejection.STALE_EPOCH)
        self.epoch = command.epoch
        if not self.cluster_id:
            self.cluster_id = command.cluster_id
        return Outcome(self.revision)

    def _client_command(self, command: ClientCommand) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        fingerprint = _fingerprint(command)
        key = _dedupe_key(command)
        if command.request_id and key in self.requests:
            seen, outcome = self.requests[key]
            if seen != fingerprint:
                return self._reject(Rejection.REQUEST_ID_REUSED), ()
            granted = outcome.lease if isinstance(seen, Acquire) else None
            current = self.leases.get(command.name)
            if granted is not None and (current is None or current.token != granted.token):
                # The grant is over: answering it again would make the caller believe it
                # holds the name, perhaps while someone else does. Nor is it granted anew.
                return self._reject(Rejection.GRANT_ENDED, current), ()
            return dataclasses.replace(outcome, replayed=True), ()
        if command.epoch != self.epoch.term:
            # Not recorded for dedupe: nothing was decided, the retry must be able to succeed.
            return self._reject(Rejection.STALE_EPOCH), ()
        match command:
            case Acquire():
                outcome, events = self._acquire(command)
            case Renew():
                outcome, events = self._renew(command)
            case Release():
                outcome, events = self._release(command)
        if command.request_id and outcome.ok:
            # Only what was done is remembered: a refused acquire may be retried with
            # the same id once the name is free (an Acquire that waits does that).
            self._remember(key, fingerprint, outcome)
        return outcome, events

    def _acquire(self, command: Acquire) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        if not _valid_ttl(command.ttl) or not command.name or not command.holder:
            return self._reject(Rejection.INVALID), ()
        current = self.leases.get(command.name)
        if current is not None and current.holder == command.holder:
            # The contract: acquiring what you hold renews it and keeps the token.
            renewed = dataclasses.replace(
                current, ttl=command.ttl, value=command.value, revision=self.revision + 1
            )
            return self._record(EventKind.RENEWED, renewed)
        if current is not None:
            return self._reject(Rejection.HELD, current), ()
        token = self.tokens.get(command.name, 0) + 1
        self.tokens[command.name] = token
        revision = self.revision + 1
        lease = Lease(
            command.name,
            command.holder,
            token,
            command.ttl,
            revision,
            acquired_revision=revision,
            value=command.value,
            acquired_at=command.sent_at,
        )
        return self._record(EventKind.ACQUIRED, lease)

    def _renew(self, command: Renew) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        current = self._held_by(command.name, command.holder, command.token)
        if current is None:
            return self._reject(Rejection.NOT_HELD, self.leases.get(command.name)), ()
        if command.ttl is not None and not _valid_ttl(command.ttl):
            return self._reject(Rejection.INVALID), ()
        lease = dataclasses.replace(
            current,
            revision=self.revision + 1,
            ttl=current.ttl if command.ttl is None else command.ttl,
            value=current.value if command.value is None else command.value,
        )
        return self._record(EventKind.RENEWED, lease)

    def _release(self, command: Release) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        current = self._held_by(command.name, command.holder, command.token)
        if current is None:
            return self._reject(Rejection.NOT_HELD, self.leases.get(command.name)), ()
        return self._record(EventKind.RELEASED, current)

    def _expire(self, command: Expire) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        if command.epoch != self.epoch.term:
            # Decided on a clock whose deadlines a newer leader has since restarted.
            return self._reject(Rejection.STALE_EPOCH), ()
        current = self.leases.get(command.name)
        if current is None or (current.token, current.revision) != (
            command.token,
            command.revision,
        ):
            # Released, re-acquired or renewed after the leader decided: not expired.
            return self._reject(Rejection.NOT_HELD, current), ()
        return self._record(EventKind.EXPIRED, current)

    def _held_by(self, name: str, holder: str, token: int) -> Lease | None:
        current = self.leases.get(name)
        if current is None or current.holder != holder or current.token != token:
            return None
        return current

    def _record(self, kind: EventKind, lease: Lease) -> tuple[Outcome, tuple[LeaseEvent, ...]]:
        self.revision += 1
        if kind in (EventKind.ACQUIRED, EventKind.RENEWED):
            self.leases[lease.name] = lease
        else:
            del self.leases[lease.name]
        event = LeaseEvent(self.revision, kind, lease)
        self.history.append(event)
        return Outcome(self.revision, lease=lease), (event,)

    def _reject(self, rejection: Rejection, lease: Lease | None = None) -> Outcome:
        return Outcome(self.revision, lease=lease, rejection=rejection)

    def _remember(self, key: DedupeKey, command: ClientCommand, outcome: Outcome) -> None:
        # Evicted in log order, so every replica forgets the same ids at the same point.
        self.requests[key] = (command, outcome)
        while len(self.requests) > self.dedupe_capacity:
            self.requests.popitem(last=False)


def _dedupe_key(command: ClientCommand) -> DedupeKey:
    if command.scoped_id:
        return (command.name, command.holder, command.request_id)
    return command.request_id  # journaled before ids were scoped: the old, cluster-wide key


def _fingerprint(command: ClientCommand) -> ClientCommand:
    """What a retry must repeat exactly: the command without when or under whom it was sent."""
    if isinstance(command, Acquire):
        return dataclasses.replace(command, epoch=0, sent_at=0.0)
    return dataclasses.replace(command, epoch=0)


def _valid_ttl(ttl: float) -> bool:
    return math.isfinite(ttl) and ttl > 0
