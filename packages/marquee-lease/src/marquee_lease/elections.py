"""Election helpers: campaign for leadership and hold it; observe who leads.

Leadership is the lease `LeaderKey.lease_name` held by the candidate, so it is
kept exactly like any lease (`leases.HeldLease`), and its token fences the term.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from marquee.coordinator.v1 import cluster_pb2, cluster_pb2_grpc, election_pb2, election_pb2_grpc
from marquee_lease.errors import NotHeld
from marquee_lease.leases import HeldLease, default_margin, granted_time, kept_alive
from marquee_lease.models import ElectionLeader, LeaderKey
from marquee_lease.transport import Transport

if TYPE_CHECKING:
    from marquee_lease.client import CoordinatorClient

# How long an Observe stream may stay quiet before another member is asked who
# leads: one maximal election timeout of the default Raft timing, as no new
# leader can be elected sooner after the old one fell silent.
LEADER_CHECK_SECONDS = 1.0

# One Campaign attempt waits this long before it is re-sent (same request id,
# same candidacy), so even an unbounded campaign never waits on a hung member forever.
CAMPAIGN_ATTEMPT_SECONDS = 30.0


@dataclass
class Leadership:
    """One term of leadership, as yielded by `CoordinatorClient.campaign()`."""

    key: LeaderKey
    lease: HeldLease
    _client: CoordinatorClient

    @property
    def token(self) -> int:
        return self.key.token

    @property
    def lost(self) -> asyncio.Event:
        return self.lease.lost

    def valid(self) -> bool:
        return self.lease.valid()

    def check(self) -> None:
        """Raise LeaseLost unless still certainly the leader."""
        self.lease.check()

    async def proclaim(self, value: bytes) -> None:
        """Publish a new value without a new election; NotHeld if no longer leader."""
        if not await self._client.proclaim(self.key, value):
            raise NotHeld(self.key.lease_name, self.key.token)


@asynccontextmanager
async def campaign(
    client: CoordinatorClient,
    election: str,
    candidate_id: str,
    value: bytes,
    ttl: float,
    *,
    timeout: float | None,
    margin: float | None,
    on_lost: Callable[[HeldLease], object] | None,
) -> AsyncIterator[Leadership]:
    key = await client.campaign_once(election, candidate_id, value, ttl, timeout=timeout)
    # The grant happened at an unknown moment while Campaign waited, so its send
    # time proves nothing: validity starts from a renewal sent now.
    renewal = await client.renew(key.lease_name, candidate_id, key.token)
    if not renewal.renewed:
        raise NotHeld(key.lease_name, key.token)
    held = HeldLease(
        client,
        name=key.lease_name,
        holder_id=candidate_id,
        token=key.token,
        ttl=ttl,
        margin=default_margin(ttl) if margin is None else margin,
        sent_at=renewal.sent_at,
        remaining=granted_time(renewal.lease, ttl),
        on_lost=on_lost,
    )
    async with kept_alive(held, lambda: client.resign(key)):
        yield Leadership(key, held, client)


async def observe(
    transport: Transport, election: str, check_every: float
) -> AsyncGenerator[ElectionLeader | None, None]:
    """Re-opens the Observe stream wherever the leader is; see CoordinatorClient.observe.

    The stream has no deadline: it is a subscription meant to last. Each reconnect
    is a new call that starts with the current state, so nothing is missed.

    A member streams whatever its role, but a paused or cut-off one streams
    nothing, exactly like a member with nothing to report. So whenever the stream
    has been quiet for `check_every`, another member is asked who leads (a bounded
    Status call): if it names a different leader in a newer Raft term, the stream
    is re-opened there.
    """
    request = election_pb2.ObserveRequest(election=election)
    delays = transport.backoff.delays()
    last: ElectionLeader | None = None
    seen_any = False
    free_redirect = True
    probes = itertools.count()
    while True:
        address = transport.pick()
        stub = election_pb2_grpc.ElectionServiceStub(transport.channel(address))
        call = stub.Observe(request)
        redirected = moved = False
        term = 0
        reading: asyncio.Task[object] | None = None
        try:
            while True:
                # Cancelling a read cancels the call, so one read stays pending across checks.
                reading = asyncio.ensure_future(call.read())
                while not (await asyncio.wait({reading}, timeout=check_every))[0]:
                    if await _led_elsewhere(transport, address, term, check_every, next(probes)):
                        moved = True
                        break
                if moved:
                    break
                response = reading.result()
                if not isinstance(response, election_pb2.ObserveResponse):
                    break  # grpc.aio.EOF: the member ended the stream
                term = max(term, response.header.raft_term)
                transport.answered(address)
                transport.learn_leader(response.header.leader_address)
                delays, free_redirect = transport.backoff.delays(), True
                state = ElectionLeader.from_proto(response.leader) if response.found else None
                if not seen_any or state != last:
                    last, seen_any = state, True
                    yield state
        except grpc.aio.AioRpcError as error:
            redirected = transport.after_error(address, error, retry_timeouts=True)
        finally:
            call.cancel()
            if reading is not None:
                reading.cancel()
                await asyncio.wait({reading})
                if not reading.cancelled():
                    reading.exception()  # retrieved: the call's end was handled above
        if moved:
            continue  # straight to the leader just named: it answered moments ago
        # Only the first hop to a newly named leader is immediate; a redirect loop backs off.
        if not (redirected and free_redirect):
            await asyncio.sleep(next(delays))
        free_redirect = free_redirect and not redirected


async def _led_elsewhere(
    transport: Transport, streaming: str, term: int, within: float, turn: int
) -> bool:
    """True if a member other than `streaming` names another leader in a newer term.

    Asks the members in turn, one per check, each for at most `within` seconds; one
    that does not answer proves nothing (it may be the one that is paused).
    """
    others = [a for a in transport.addresses if a != streaming]
    if not others:
        return False
    asked = others[turn % len(others)]
    stub = cluster_pb2_grpc.ClusterServiceStub(transport.channel(asked))
    try:
        status = await stub.Status(
            cluster_pb2.StatusRequest(), timeout=min(within, transport.attempt_timeout)
        )
    except grpc.aio.AioRpcError:
        return False
    leader = status.header.leader_address
    if not leader or leader == streaming or status.header.raft_term <= term:
        return False
    transport.suspects.discard(leader)  # an elected leader is worth a try
    transport.learn_leader(leader)
    return True
