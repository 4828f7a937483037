"""CoordinatorClient: leases, elections and membership over a list of coordinator members.

Every call has a deadline (`timeout`, the client's default when None) and is
retried on another member or on the leader a follower names, never past it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from types import TracebackType

from marquee.coordinator.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    election_pb2,
    election_pb2_grpc,
    lease_pb2,
    lease_pb2_grpc,
)
from marquee_lease import elections
from marquee_lease.errors import CoordinatorError, LeaseTaken
from marquee_lease.leases import HeldLease, default_margin, granted_time, kept_alive
from marquee_lease.models import (
    AcquireResult,
    ClusterStatus,
    ElectionLeader,
    Header,
    LeaderKey,
    LeaseInfo,
    LeaseList,
    Member,
    Membership,
    RenewResult,
    Transfer,
    duration,
)
from marquee_lease.retry import Backoff, Deadline
from marquee_lease.transport import LEADER_CHECK_SECONDS, Transport

DEFAULT_TIMEOUT = 5.0


def new_request_id() -> str:
    return uuid.uuid4().hex


class CoordinatorClient:
    """Use as `async with CoordinatorClient(["127.0.0.1:50060", ...]) as client:`."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float = 2.0,
        backoff: Backoff | None = None,
        admin_token: str | None = None,
    ) -> None:
        """`admin_token`: the cluster's admin credential, which membership changes and
        leadership transfers need outside the dev profile (sent as a bearer token)."""
        self.timeout = timeout
        self._admin: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {admin_token}"),) if admin_token else ()
        )
        self.transport = Transport(endpoints, attempt_timeout=attempt_timeout, backoff=backoff)

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline.after(self.timeout if timeout is None else timeout)

    # -- leases ------------------------------------------------------------------------

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
        """Try to take `name` for `holder_id`; with `wait`, wait up to that long for it.

        Every retry carries the same request id, so a retry of an attempt whose
        answer was lost returns that attempt's grant instead of a second one.
        """
        request = lease_pb2.AcquireRequest(
            name=name,
            holder_id=holder_id,
            ttl=duration(ttl),
            request_id=request_id or new_request_id(),
            wait_timeout=duration(wait) if wait > 0 else None,
        )
        # Waiting is part of the call: the default deadline leaves room for it.
        deadline = self._deadline(wait + self.timeout if timeout is None else timeout)
        response, sent_at = await self.transport.call(
            f"acquire {name!r}",
            lambda channel, t: lease_pb2_grpc.LeaseServiceStub(channel).Acquire(request, timeout=t),
            deadline,
            # Waiting happens on the server: an attempt must outlast it. Without a
            # wait it is a plain call, whose attempts share the time left.
            attempt_timeout=wait + self.transport.attempt_timeout if wait > 0 else None,
        )
        return AcquireResult(
            acquired=response.acquired,
            lease=_lease(response),
            header=Header.from_proto(response.header),
            sent_at=sent_at,
        )

    async def renew(
        self,
        name: str,
        holder_id: str,
        token: int,
        *,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> RenewResult:
        request = lease_pb2.RenewRequest(
            name=name,
            holder_id=holder_id,
            token=token,
            ttl=duration(ttl) if ttl is not None else None,
        )
        response, sent_at = await self.transport.call(
            f"renew {name!r}",
            lambda channel, t: lease_pb2_grpc.LeaseServiceStub(channel).Renew(request, timeout=t),
            self._deadline(timeout),
        )
        return RenewResult(
            renewed=response.renewed,
            lease=_lease(response),
            header=Header.from_proto(response.header),
            sent_at=sent_at,
        )

    async def release(
        self, name: str, holder_id: str, token: int, *, timeout: float | None = None
    ) -> bool:
        """False if it was not held with that token any more (releasing is idempotent)."""
        request = lease_pb2.ReleaseRequest(name=name, holder_id=holder_id, token=token)
        response, _ = await self.transport.call(
            f"release {name!r}",
            lambda channel, t: lease_pb2_grpc.LeaseServiceStub(channel).Release(request, timeout=t),
            self._deadline(timeout),
        )
        return response.released

    async def get(self, name: str, *, timeout: float | None = None) -> LeaseInfo | None:
        """The current lease on `name`, None if nobody holds it."""
        request = lease_pb2.GetRequest(name=name)
        response, _ = await self.transport.call(
            f"get {name!r}",
            lambda channel, t: lease_pb2_grpc.LeaseServiceStub(channel).Get(request, timeout=t),
            self._deadline(timeout),
        )
        return _lease(response) if response.found else None

    async def list_leases(
        self, prefix: str = "", *, limit: int = 0, timeout: float | None = None
    ) -> LeaseList:
        request = lease_pb2.ListRequest(prefix=prefix, limit=limit)
        response, _ = await self.transport.call(
            "list leases",
            lambda channel, t: lease_pb2_grpc.LeaseServiceStub(channel).List(request, timeout=t),
            self._deadline(timeout),
        )
        return LeaseList(
            leases=[LeaseInfo.from_proto(lease) for lease in response.leases],
            more=response.more,
            header=Header.from_proto(response.header),
        )

    @asynccontextmanager
    async def lease(
        self,
        name: str,
        ttl: float,
        *,
        holder_id: str | None = None,
        wait: float = 0.0,
        margin: float | None = None,
        on_lost: Callable[[HeldLease], object] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[HeldLease]:
        """`async with client.lease(name, ttl) as held:` holds `name`, renewed in the background.

        Raises LeaseTaken if someone else holds it (after waiting up to `wait`).
        Inside, `held.token` fences writes, `held.valid()` says whether it is still
        certainly ours, `held.lost` is set (and `on_lost(held)` called) once it is
        not. Leaving the block releases it. `holder_id` defaults to a fresh id.
        """
        holder_id = holder_id or new_request_id()
        result = await self.acquire(name, holder_id, ttl, wait=wait, timeout=timeout)
        if not result.acquired or result.lease is None:
            raise LeaseTaken(name, result.lease)
        token = result.lease.token
        held = HeldLease(
            lambda t: self.renew(name, holder_id, token, timeout=t),
            name=name,
            holder_id=holder_id,
            token=token,
            ttl=ttl,
            margin=default_margin(ttl) if margin is None else margin,
            sent_at=result.sent_at,
            remaining=granted_time(result.lease, ttl),
            on_lost=on_lost,
        )
        async with kept_alive(held, lambda: self.release(name, holder_id, held.token)):
            yield held

    # -- elections ---------------------------------------------------------------------

    def campaign(
        self,
        election: str,
        candidate_id: str,
        value: bytes = b"",
        ttl: float = 10.0,
        *,
        timeout: float | None = None,
        margin: float | None = None,
        on_lost: Callable[[HeldLease], object] | None = None,
    ) -> AbstractAsyncContextManager[elections.Leadership]:
        """`async with client.campaign(...) as leadership:` once elected; resigns on exit.

        Waits to be elected for up to `timeout` seconds (None: as long as it takes)
        and raises LeaseUnavailable if that passes. `leadership.token` is the
        fencing token of the term, `leadership.lost` is set when it ends.
        """
        return elections.campaign(
            self,
            election,
            candidate_id,
            value,
            ttl,
            timeout=timeout,
            margin=margin,
            on_lost=on_lost,
        )

    async def campaign_once(
        self,
        election: str,
        candidate_id: str,
        value: bytes,
        ttl: float,
        *,
        timeout: float | None = None,
    ) -> LeaderKey:
        """The Campaign call alone: returns the leader key once elected (no renewal)."""
        request = election_pb2.CampaignRequest(
            election=election,
            candidate_id=candidate_id,
            value=value,
            ttl=duration(ttl),
            request_id=new_request_id(),
        )
        # Campaign blocks until elected, so one attempt may take long; it is still
        # bounded, and a retry with the same request id resumes the same candidacy.
        deadline = Deadline.after(math.inf if timeout is None else timeout)
        response, _ = await self.transport.call(
            f"campaign in {election!r}",
            lambda channel, t: election_pb2_grpc.ElectionServiceStub(channel).Campaign(
                request, timeout=t
            ),
            deadline,
            attempt_timeout=elections.CAMPAIGN_ATTEMPT_SECONDS,
            silent_until_done=True,
        )
        return LeaderKey.from_proto(response.leader)

    async def leader(self, election: str, *, timeout: float | None = None) -> ElectionLeader | None:
        """The current leader of `election`, None if it has none."""
        request = election_pb2.LeaderRequest(election=election)
        response, _ = await self.transport.call(
            f"leader of {election!r}",
            lambda channel, t: election_pb2_grpc.ElectionServiceStub(channel).Leader(
                request, timeout=t
            ),
            self._deadline(timeout),
        )
        return ElectionLeader.from_proto(response.leader) if response.found else None

    def observe(
        self, election: str, *, check_every: float = LEADER_CHECK_SECONDS
    ) -> AsyncGenerator[ElectionLeader | None, None]:
        """The leader of `election` now, then at every change (None: no leader).

        Follows the coordinator leader across failovers and skips repeats. A stream
        quiet for `check_every` seconds costs one Status call to another member, so
        a paused or cut-off coordinator leader is left within about that long after
        a new one is elected. Close it (`contextlib.aclosing`, or leave the
        `async for`) to end the stream.
        """
        return elections.observe(self.transport, election, check_every)

    async def resign(self, key: LeaderKey, *, timeout: float | None = None) -> bool:
        """Give leadership up; False if it was not the leader any more."""
        request = election_pb2.ResignRequest(leader=key.to_proto())
        response, _ = await self.transport.call(
            f"resign from {key.election!r}",
            lambda channel, t: election_pb2_grpc.ElectionServiceStub(channel).Resign(
                request, timeout=t
            ),
            self._deadline(timeout),
        )
        return response.resigned

    async def proclaim(self, key: LeaderKey, value: bytes, *, timeout: float | None = None) -> bool:
        """Publish a new value as leader; False if `key` is not the leader any more."""
        return (await self.renew_leadership(key, value, timeout=timeout)).renewed

    async def renew_leadership(
        self, key: LeaderKey, value: bytes, *, timeout: float | None = None
    ) -> RenewResult:
        """Keep `key`'s leadership alive for another TTL, publishing `value`.

        A Proclaim: it renews the election's lease, which the lease API may not
        touch (names under `_election/` are the ElectionService's). Publishing the
        current value again is no change: observers see nothing.
        """
        request = election_pb2.ProclaimRequest(leader=key.to_proto(), value=value)
        response, sent_at = await self.transport.call(
            f"proclaim in {key.election!r}",
            lambda channel, t: election_pb2_grpc.ElectionServiceStub(channel).Proclaim(
                request, timeout=t
            ),
            self._deadline(timeout),
        )
        return RenewResult(
            renewed=response.proclaimed,
            lease=None,
            header=Header.from_proto(response.header),
            sent_at=sent_at,
        )

    # -- membership --------------------------------------------------------------------

    async def cluster_status(self, *, timeout: float | None = None) -> ClusterStatus:
        """Status as the leader sees it, or as any member does when the leader cannot say."""
        deadline = self._deadline(timeout)
        status = await self._status(deadline)
        leader = status.header.leader_address
        if leader and status.member.grpc_address != leader and not deadline.expired():
            # Only the leader knows how far every member has caught up.
            with suppress(CoordinatorError):
                status = await self._status(deadline, address=leader)
        return status

    async def _status(self, deadline: Deadline, address: str | None = None) -> ClusterStatus:
        request = cluster_pb2.StatusRequest()
        stub = cluster_pb2_grpc.ClusterServiceStub
        if address is None:
            response, _ = await self.transport.call(
                "cluster status",
                lambda channel, t: stub(channel).Status(request, timeout=t),
                deadline,
            )
        else:
            response = await self.transport.call_once(
                "cluster status",
                address,
                lambda channel, t: stub(channel).Status(request, timeout=t),
                deadline,
            )
        return ClusterStatus.from_proto(response)

    async def members(self, *, timeout: float | None = None) -> list[Member]:
        request = cluster_pb2.MemberListRequest()
        response, _ = await self.transport.call(
            "list members",
            lambda channel, t: cluster_pb2_grpc.ClusterServiceStub(channel).MemberList(
                request, timeout=t
            ),
            self._deadline(timeout),
        )
        return [Member.from_proto(m) for m in response.members]

    async def add_member(
        self,
        member_id: str,
        raft_address: str,
        grpc_address: str,
        *,
        learner: bool = False,
        timeout: float | None = None,
    ) -> Membership:
        """Add a member; start the new node afterwards with the returned members as peers."""
        request = cluster_pb2.MemberAddRequest(
            id=member_id, raft_address=raft_address, grpc_address=grpc_address, learner=learner
        )
        response, _ = await self.transport.call(
            f"add member {member_id!r}",
            lambda channel, t: cluster_pb2_grpc.ClusterServiceStub(channel).MemberAdd(
                request, timeout=t, metadata=self._admin
            ),
            self._deadline(timeout),
            # A timed-out change may still commit; running it twice would not be the same.
            retry_timeouts=False,
        )
        return Membership(
            members=[Member.from_proto(m) for m in response.members],
            header=Header.from_proto(response.header),
            added=Member.from_proto(response.member),
        )

    async def remove_member(self, member_id: str, *, timeout: float | None = None) -> Membership:
        request = cluster_pb2.MemberRemoveRequest(id=member_id)
        response, _ = await self.transport.call(
            f"remove member {member_id!r}",
            lambda channel, t: cluster_pb2_grpc.ClusterServiceStub(channel).MemberRemove(
                request, timeout=t, metadata=self._admin
            ),
            self._deadline(timeout),
            retry_timeouts=False,
        )
        return Membership(
            members=[Member.from_proto(m) for m in response.members],
            header=Header.from_proto(response.header),
        )

    async def transfer_leadership(
        self, target_id: str = "", *, timeout: float | None = None
    ) -> Transfer:
        """Hand leadership to `target_id` (empty: the leader picks) and wait for it."""
        request = cluster_pb2.TransferLeadershipRequest(target_id=target_id)
        response, _ = await self.transport.call(
            "transfer leadership",
            lambda channel, t: cluster_pb2_grpc.ClusterServiceStub(channel).TransferLeadership(
                request, timeout=t, metadata=self._admin
            ),
            self._deadline(timeout),
            retry_timeouts=False,
        )
        return Transfer(
            previous_leader_id=response.previous_leader_id,
            leader_id=response.header.leader_id,
            leader_address=response.header.leader_address,
        )


def _lease(
    response: lease_pb2.AcquireResponse | lease_pb2.RenewResponse | lease_pb2.GetResponse,
) -> LeaseInfo | None:
    return LeaseInfo.from_proto(response.lease) if response.HasField("lease") else None
