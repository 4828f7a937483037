"""`client.lease()` and `client.campaign()`: renewal, loss, release, and no leaked tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest
from fake_coordinator import FakeCluster

from marquee_lease import (
    Backoff,
    CoordinatorClient,
    ElectionLeader,
    HeldLease,
    LeaseLost,
    LeaseTaken,
)

FAST = Backoff(initial=0.01, maximum=0.05)


def client_tasks() -> set[asyncio.Task[object]]:
    # The fake members serve from this same loop; their request tasks are not the client's.
    return {
        task
        for task in asyncio.all_tasks()
        if "AioServer" not in getattr(task.get_coro(), "__qualname__", "")
        and not task.get_name().startswith("HandleExceptions[")
        # grpc.aio names the server side of each call so; it can outlive the client's
        # call by a loop iteration when the fake answers with an error.
        and task.get_name() != "rpc_task"
    }


@asynccontextmanager
async def no_new_tasks() -> AsyncIterator[None]:
    """Fails if the block leaves any task of the client's behind."""
    before = client_tasks()
    yield
    await asyncio.sleep(0)
    leaked = client_tasks() - before
    assert not leaked, leaked


async def test_a_held_lease_is_renewed_in_the_background_and_released_on_exit(
    fake: FakeCluster,
) -> None:
    async with no_new_tasks(), CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        async with client.lease("jobs/a", ttl=0.6, holder_id="me") as held:
            assert held.token == 1
            assert held.valid()
            # Three TTLs: without renewals it would have expired twice over.
            await asyncio.sleep(1.8)
            assert held.valid()
            assert not held.lost.is_set()
            assert held.renewals >= 6
            current = await client.get("jobs/a")
            assert current is not None
            assert current.token == 1
            assert current.holder_id == "me"
        assert not held.valid()
        assert not held.lost.is_set()
        assert await client.get("jobs/a") is None


async def test_validity_is_counted_from_the_send_time_minus_the_margin(
    fake: FakeCluster,
) -> None:
    fake.refuse_renewals = True
    async with CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        before = time.monotonic()
        async with client.lease("jobs/a", ttl=1.0, margin=0.2) as held:
            after = time.monotonic()
            deadline = time.monotonic() + held.time_left()
        # send time (in [before, after]) + remaining (at most the TTL, less the time the
        # answer took) - margin.
        assert before + 0.8 - (after - before) - 0.01 <= deadline <= after + 0.8


async def test_a_refused_renewal_sets_lost_and_calls_back(fake: FakeCluster) -> None:
    called: list[HeldLease] = []
    async with (
        no_new_tasks(),
        CoordinatorClient(fake.endpoints, backoff=FAST) as client,
        client.lease("jobs/a", ttl=0.6, on_lost=called.append) as held,
    ):
        fake.revoke("jobs/a")
        await asyncio.wait_for(held.lost.wait(), 0.5)
        assert not held.valid()
        assert called == [held]
        assert held.lost_reason is not None
        assert "refused" in held.lost_reason
        with pytest.raises(LeaseLost):
            held.check()


async def test_a_lease_whose_renewals_go_unanswered_is_lost_when_its_validity_ends(
    fake: FakeCluster,
) -> None:
    async with (
        no_new_tasks(),
        CoordinatorClient(fake.endpoints, backoff=FAST) as client,
        client.lease("jobs/a", ttl=0.9, margin=0.1) as held,
    ):
        valid_until = time.monotonic() + held.time_left()
        for member in fake.members:
            member.hung = True
        await asyncio.wait_for(held.lost.wait(), 2.0)
        lost_at = time.monotonic()
        assert not held.valid()
        # Declared lost once the local validity ran out: not before, not much after.
        assert valid_until - 0.05 <= lost_at <= valid_until + 0.25
        for member in fake.members:
            member.hung = False


async def test_a_lease_held_by_someone_else_is_taken(fake: FakeCluster) -> None:
    async with (
        no_new_tasks(),
        CoordinatorClient(fake.endpoints, backoff=FAST) as client,
        client.lease("jobs/a", ttl=5, holder_id="first"),
    ):
        with pytest.raises(LeaseTaken) as caught:
            async with client.lease("jobs/a", ttl=5, holder_id="second"):
                pytest.fail("two holders")
        assert caught.value.current is not None
        assert caught.value.current.holder_id == "first"


async def test_cancelling_the_holder_releases_and_leaks_nothing(fake: FakeCluster) -> None:
    entered = asyncio.Event()

    async def hold(client: CoordinatorClient) -> None:
        async with client.lease("jobs/a", ttl=5):
            entered.set()
            await asyncio.sleep(60)

    async with no_new_tasks(), CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        task = asyncio.create_task(hold(client))
        await entered.wait()
        task.cancel()
        await asyncio.wait([task])
        assert await client.get("jobs/a") is None


async def test_campaign_elects_in_turn_with_growing_tokens(fake: FakeCluster) -> None:
    seen: list[ElectionLeader | None] = []
    reported = asyncio.Condition()

    async def watch(client: CoordinatorClient) -> None:
        async with aclosing(client.observe("scheduler")) as changes:
            async for change in changes:
                async with reported:
                    seen.append(change)
                    reported.notify_all()

    def b_reported() -> bool:
        return any(s is not None and s.key.candidate_id == "b" for s in seen)

    async with no_new_tasks(), CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        watcher = asyncio.create_task(watch(client))
        async with reported:  # until the watch has reported "no leader yet"
            await asyncio.wait_for(reported.wait_for(lambda: bool(seen)), 5.0)
        async with client.campaign("scheduler", "a", b"addr-a", ttl=0.6) as first:
            assert first.valid()
            second_campaign = asyncio.create_task(
                client.campaign_once("scheduler", "b", b"addr-b", ttl=0.6, timeout=5)
            )
            await asyncio.sleep(0.8)  # past a TTL: renewals keep "a" the leader
            assert not second_campaign.done()
            leader = await client.leader("scheduler")
            assert leader is not None
            assert leader.key.candidate_id == "a"
            await first.proclaim(b"addr-a2")
        second_key = await asyncio.wait_for(second_campaign, 2.0)
        assert second_key.candidate_id == "b"
        assert second_key.token > first.token
        async with reported:
            await asyncio.wait_for(reported.wait_for(b_reported), 5.0)
        watcher.cancel()
        await asyncio.wait([watcher])
        await client.resign(second_key)
    values = [(s.key.candidate_id, s.value) if s else None for s in seen]
    assert values[:4] == [None, ("a", b"addr-a"), ("a", b"addr-a2"), ("b", b"addr-b")]


async def test_observe_leaves_a_silent_coordinator_leader(fake: FakeCluster) -> None:
    old, new = fake.members[0], fake.members[1]
    async with (
        CoordinatorClient(fake.endpoints, backoff=FAST) as client,
        aclosing(client.observe("scheduler", check_every=0.2)) as changes,
    ):
        assert await anext(changes) is None
        assert client.transport.leader == old.address
        # Paused: the stream stays open and says nothing, like one with nothing to say.
        old.hung = True
        fake.elect(new.id)
        try:
            async with (
                CoordinatorClient([new.address], backoff=FAST) as majority,
                majority.campaign("scheduler", "a", ttl=5),
            ):
                change = await asyncio.wait_for(anext(changes), 2.0)
                assert change is not None
                assert change.key.candidate_id == "a"
                assert client.transport.leader == new.address
        finally:
            old.hung = False


async def test_a_short_lease_outlives_a_paused_leader(fake: FakeCluster) -> None:
    async with (
        no_new_tasks(),
        CoordinatorClient(fake.endpoints, attempt_timeout=2.0, backoff=FAST) as client,
        client.lease("jobs/a", ttl=3.0) as held,
    ):
        token = held.token
        fake.members[0].hung = True  # SIGSTOPped right after it granted the lease
        fake.elect(fake.members[1].id)
        # The first renewal has 1.7 s (TTL - TTL/3 - margin), under one attempt timeout.
        async with asyncio.timeout(10):
            while held.renewals < 2 and not held.lost.is_set():
                await asyncio.sleep(0.05)  # polls the condition; nothing signals a renewal
        assert not held.lost.is_set(), held.lost_reason
        assert held.valid()
        assert held.token == token
        fake.members[0].hung = False
