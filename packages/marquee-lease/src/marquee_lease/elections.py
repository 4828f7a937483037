"""Election helpers: campaign for leadership and hold it; observe who leads.

Leadership is the lease `LeaderKey.lease_name` held by the candidate, so it is
kept like any lease (`leases.HeldLease`), and its token fences the term. The
lease API refuses names under `_election/`, so the renewals are Proclaims of
the current value, which renew the lease and change nothing observers see.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from marquee.coordinator.v1 import election_pb2, election_pb2_grpc
from marquee_lease.errors import NotHeld
from marquee_lease.leases import HeldLease, default_margin, granted_time, kept_alive
from marquee_lease.models import ElectionLeader, LeaderKey, RenewResult
from marquee_lease.transport import Transport

if TYPE_CHECKING:
    from marquee_lease.client import CoordinatorClient

# One Campaign attempt waits this long before it is re-sent (same request id,
# same candidacy), so even an unbounded campaign never waits on a hung member forever.
CAMPAIGN_ATTEMPT_SECONDS = 30.0


@dataclass
class Published:
    """The value a leader publishes; the lock keeps a renewal from re-publishing an old one."""

    value: bytes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Leadership:
    """One term of leadership, as yielded by `CoordinatorClient.campaign()`."""

    key: LeaderKey
    lease: HeldLease
    _client: CoordinatorClient
    _published: Published

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
        async with self._published.lock:
            # Set first: even if this call's answer is lost, renewals publish it from now on.
            self._published.value = value
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
    published = Published(value)

    async def renew(seconds: float) -> RenewResult:
        async with published.lock:
            return await client.renew_leadership(key, published.value, timeout=seconds)

    # The grant happened at an unknown moment while Campaign waited, so its send
    # time proves nothing: validity starts from a renewal sent now.
    renewal = await renew(client.timeout)
    if not renewal.renewed:
        raise NotHeld(key.lease_name, key.token)
    held = HeldLease(
        renew,
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
        yield Leadership(key, held, client, published)


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
                    if await transport.led_elsewhere(address, term, check_every, next(probes)):
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
