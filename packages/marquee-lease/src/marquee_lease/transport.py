"""Channels to the coordinator members, and calls that follow the Raft leader.

Leader-only calls sent to a follower come back FAILED_PRECONDITION with the
leader's gRPC address in the `x-marquee-leader` trailing metadata; without a
known leader the answer is UNAVAILABLE. The transport remembers the leader,
goes there on a redirect, and otherwise tries the members in turn, backing off
between rounds, all within the caller's deadline.

A paused member (SIGSTOP, a VM freeze) keeps its sockets open, so only a timeout
tells it apart from a slow one. An attempt that timed out makes its member a
suspect: the next call goes elsewhere, and a follower's redirect to a suspect
(followers name the old leader until they elect a new one) is not followed
straight away; the suspect gets its turn again after the other members. And an
attempt never takes more than half the time left (down to MIN_ATTEMPT_SECONDS),
so a call whose deadline is short still reaches a second member.

A call that rightly waits long for its answer (Campaign, an Acquire with a
wait) cannot tell a paused leader from a busy one by its silence; while it
waits, another member is asked now and then who leads, and the call moves to
a leader elected meanwhile (`led_elsewhere`). Observe does the same.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import grpc

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc, header_pb2
from marquee_lease.errors import LeaseUnavailable, RequestRejected
from marquee_lease.retry import Backoff, Deadline

LEADER_METADATA_KEY = "x-marquee-leader"
# The shortest attempt worth making when the time left is split between members:
# a loaded leader answers a write within this (a Raft commit on loopback is ms).
MIN_ATTEMPT_SECONDS = 0.25
# How long a waiting call or a quiet Observe stream goes before another member is
# asked who leads: one maximal election timeout of the default Raft timing, as no
# new leader is elected sooner after the old one fell silent.
LEADER_CHECK_SECONDS = 1.0

# A member that was down comes back within a second, not after gRPC's default
# reconnect backoff of up to two minutes.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class HasHeader(Protocol):
    @property
    def header(self) -> header_pb2.ResponseHeader: ...


R = TypeVar("R", bound=HasHeader)
# (channel, attempt timeout in seconds) -> the response.
Invoke = Callable[[grpc.aio.Channel, float], Awaitable[R]]


def leader_hint(error: grpc.aio.AioRpcError) -> str:
    """The leader address a follower named in its trailing metadata, or ""."""
    for key, value in error.trailing_metadata() or ():
        if key == LEADER_METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


class Transport:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        attempt_timeout: float = 2.0,
        backoff: Backoff | None = None,
    ) -> None:
        addresses = list(dict.fromkeys(e.strip() for e in endpoints if e.strip()))
        if not addresses:
            raise ValueError("at least one coordinator endpoint is needed")
        self.addresses = addresses
        self.attempt_timeout = attempt_timeout
        self.backoff = backoff or Backoff()
        self.leader: str | None = None
        # Members whose last attempt timed out without an answer (paused or cut off).
        self.suspects: set[str] = set()
        # The newest Raft term any answer carried: a leader named in an older one is stale.
        self.term = 0
        self._probes = itertools.count()
        self._next = 0
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        return self._channels[address]

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    def pick(self) -> str:
        """Where to send the next call: the leader if known, else the next member in turn."""
        if self.leader is not None:
            return self.leader
        return self.addresses[self._next % len(self.addresses)]

    def learn_leader(self, address: str) -> None:
        # A member added after this client was made is still worth trying later.
        if address and address not in self.addresses:
            self.addresses.append(address)
        # A suspect named as leader (by a follower that has not noticed yet) is not
        # trusted: the members are tried in turn instead, the suspect among them.
        if address and address not in self.suspects:
            self.leader = address

    def unreachable(self, address: str) -> None:
        """`address` did not answer (or knows no leader): move on to the next member."""
        if self.leader == address:
            self.leader = None
        if address in self.addresses:
            self._next = self.addresses.index(address) + 1
        else:
            self._next += 1

    def timed_out(self, address: str) -> None:
        """An attempt at `address` got no answer in time: suspect it, try the others first."""
        self.suspects.add(address)
        self.unreachable(address)

    def answered(self, address: str) -> None:
        """`address` answered (anything but a timeout): it is running after all."""
        self.suspects.discard(address)

    def after_error(
        self, address: str, error: grpc.aio.AioRpcError, *, retry_timeouts: bool
    ) -> bool:
        """Classify a failed attempt: True if it was a redirect to a new address.

        Raises RequestRejected if the error is an answer that retrying cannot change.
        """
        code = error.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.timed_out(address)
        else:
            self.answered(address)
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            leader = leader_hint(error)
            if not leader:
                # A leader refusing the request itself, not a follower redirecting.
                raise RequestRejected(error.details() or code.name, code)
            if leader in self.suspects:
                # Most likely the old leader, not yet replaced: ask the next member.
                self.learn_leader(leader)
                self.unreachable(address)
                return False
            self.learn_leader(leader)
            return leader != address
        if code == grpc.StatusCode.UNAVAILABLE:
            self.unreachable(address)
            return False
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and retry_timeouts:
            return False
        raise RequestRejected(error.details() or code.name, code)

    async def call(
        self,
        what: str,
        invoke: Invoke[R],
        deadline: Deadline,
        *,
        attempt_timeout: float | None = None,
        retry_timeouts: bool = True,
        silent_until_done: bool = False,
    ) -> tuple[R, float]:
        """Invoke until a member answers; returns the response and its attempt's send time.

        `attempt_timeout` caps one attempt so a hung member does not eat the whole
        deadline; a call that waits on the server (an acquire with a wait) sets its
        own, and its attempts are not split. `retry_timeouts=False` for calls whose
        outcome is unknown after a timeout and that must not run twice.
        `silent_until_done` for calls that rightly say nothing until they are done
        (Campaign): their timeouts do not make the member a suspect.
        """
        cap = self.attempt_timeout if attempt_timeout is None else attempt_timeout
        # Only a plain call that may be retried after a timeout gains from a second try.
        split = attempt_timeout is None and retry_timeouts and not silent_until_done
        delays = self.backoff.delays()
        free_redirect = True
        last_error: grpc.aio.AioRpcError | None = None
        while (remaining := deadline.remaining()) > 0:
            address = self.pick()
            timeout = attempt_seconds(remaining, cap) if split else min(remaining, cap)
            sent_at = time.monotonic()
            # Only a call that waits on the server by design needs watching while it waits.
            watch = attempt_timeout is not None and timeout > LEADER_CHECK_SECONDS
            try:
                if watch:
                    response = await self._watched(invoke, address, timeout)
                else:
                    response = await invoke(self.channel(address), timeout)
            except _Moved:
                continue  # to the leader just named, at once: it answered moments ago
            except grpc.aio.AioRpcError as error:
                last_error = error
                timed_out = error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                if timed_out and silent_until_done:
                    if timeout >= remaining:
                        break
                    # Not done yet, or not running: re-sent (same request id) to the
                    # next member, whose redirect leads back to the leader if it runs.
                    self.unreachable(address)
                    continue
                if timed_out and timeout >= remaining:
                    # The caller's own deadline, not just this attempt's. The member still
                    # said nothing: the next call should not start with it.
                    self.timed_out(address)
                    break
                redirected = self.after_error(address, error, retry_timeouts=retry_timeouts)
                # A first hop to a leader we just learned of is worth taking at once;
                # anything else (a member down, a redirect loop) waits its turn.
                delay = 0.0 if redirected and free_redirect else next(delays)
                free_redirect = free_redirect and not redirected
                if delay >= deadline.remaining():
                    break
                await asyncio.sleep(delay)
                continue
            self.answered(address)
            self.term = max(self.term, response.header.raft_term)
            self.learn_leader(response.header.leader_address)
            return response, sent_at
        raise _unavailable(what, last_error)

    async def _watched(self, invoke: Invoke[R], address: str, timeout: float) -> R:
        """One attempt that may wait long; raises _Moved if a new leader is elected meanwhile."""
        attempt = asyncio.ensure_future(invoke(self.channel(address), timeout))
        try:
            while not (await asyncio.wait({attempt}, timeout=LEADER_CHECK_SECONDS))[0]:
                if await self.led_elsewhere(
                    address, self.term, LEADER_CHECK_SECONDS, next(self._probes)
                ):
                    raise _Moved
            return attempt.result()
        finally:
            # Cancelling the wait cancels the call (a Campaign's withdraws the candidacy).
            attempt.cancel()
            await asyncio.wait({attempt})
            if not attempt.cancelled():
                attempt.exception()  # retrieved: result() above raised it if it mattered

    async def led_elsewhere(self, asked_at: str, term: int, within: float, turn: int) -> bool:
        """True if a member other than `asked_at` names another leader in a term after `term`.

        One member per check, in turn (`turn`), for at most `within` seconds; one that
        does not answer proves nothing (it may be the paused one). The leader it names
        becomes this transport's leader.
        """
        others = [a for a in self.addresses if a != asked_at]
        if not others:
            return False
        asked = others[turn % len(others)]
        stub = cluster_pb2_grpc.ClusterServiceStub(self.channel(asked))
        try:
            status = await stub.Status(
                cluster_pb2.StatusRequest(), timeout=min(within, self.attempt_timeout)
            )
        except grpc.aio.AioRpcError:
            return False
        self.answered(asked)
        leader = status.header.leader_address
        if not leader or leader == asked_at or status.header.raft_term <= term:
            return False
        self.term = max(self.term, status.header.raft_term)
        self.suspects.discard(leader)  # elected after whatever made it a suspect
        self.learn_leader(leader)
        return True

    async def call_once(self, what: str, address: str, invoke: Invoke[R], deadline: Deadline) -> R:
        """One attempt at one particular member, e.g. to ask the leader for its own view."""
        try:
            return await invoke(
                self.channel(address), min(deadline.remaining(), self.attempt_timeout)
            )
        except grpc.aio.AioRpcError as error:
            raise _unavailable(what, error) from None


class _Moved(Exception):
    """A waiting attempt was given up: another member named a newer leader."""


def attempt_seconds(remaining: float, cap: float) -> float:
    """One attempt's share of the time left: half of it, so another member can be
    tried if this one says nothing, but at least MIN_ATTEMPT_SECONDS and at most `cap`."""
    return min(remaining, cap, max(remaining / 2, MIN_ATTEMPT_SECONDS))


def _unavailable(what: str, error: grpc.aio.AioRpcError | None) -> LeaseUnavailable:
    if error is None:
        return LeaseUnavailable(f"{what}: deadline passed before any member was tried")
    code = error.code()
    detail = error.details() or code.name
    return LeaseUnavailable(
        f"{what}: no coordinator answered in time ({code.name}: {detail})", code
    )
