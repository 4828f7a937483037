"""Leader following, retries and deadlines, against the in-process fake cluster.

These show what a real cluster cannot show on demand: lost answers, redirect
loops, members that hang, and calls that must end at their deadline.
"""

from __future__ import annotations

import socket
import time

import grpc
import pytest
from fake_coordinator import FakeCluster

from marquee_lease import (
    Backoff,
    CoordinatorClient,
    LeaseUnavailable,
    RequestRejected,
)

FAST = Backoff(initial=0.01, maximum=0.05)
# Room for a loaded machine (the suite must pass beside two busy loops); still far
# below what overrunning a deadline would cost here (the 5 s attempt timeouts).
SLACK = 1.0


def dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_a_follower_redirects_to_the_leader_and_the_client_remembers(
    fake: FakeCluster,
) -> None:
    follower, leader = fake.members[1], fake.members[0]
    async with CoordinatorClient([follower.address], backoff=FAST) as client:
        result = await client.acquire("jobs/a", "me", ttl=5)
        assert result.acquired
        assert result.lease is not None
        assert result.lease.token == 1
        assert result.header.leader_id == leader.id
        await client.get("jobs/a")
    # One redirect, then straight to the leader.
    assert fake.calls == [
        (follower.id, "Acquire"),
        (leader.id, "Acquire"),
        (leader.id, "Get"),
    ]


async def test_a_retried_acquire_whose_answer_was_lost_is_not_granted_twice(
    fake: FakeCluster,
) -> None:
    fake.lose_answers = 2
    async with CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        result = await client.acquire("jobs/a", "me", ttl=5)
    assert result.acquired
    assert result.lease is not None
    assert result.lease.token == 1
    assert fake.grants == 1
    assert [method for _, method in fake.calls] == ["Acquire"] * 3


async def test_unreachable_members_are_skipped(fake: FakeCluster) -> None:
    endpoints = [dead_address(), dead_address(), fake.members[2].address]
    async with CoordinatorClient(endpoints, backoff=FAST) as client:
        result = await client.acquire("jobs/a", "me", ttl=5)
    assert result.acquired


async def test_a_hung_member_costs_one_attempt_timeout_not_the_deadline(
    fake: FakeCluster,
) -> None:
    fake.members[0].hung = True
    fake.elect(fake.members[1].id)
    async with CoordinatorClient(
        fake.endpoints, timeout=5.0, attempt_timeout=0.3, backoff=FAST
    ) as client:
        started = time.monotonic()
        result = await client.acquire("jobs/a", "me", ttl=5)
        elapsed = time.monotonic() - started
    assert result.acquired
    assert 0.3 <= elapsed < 1.5 + SLACK


async def test_a_redirect_loop_ends_at_the_deadline_not_after(fake: FakeCluster) -> None:
    a, b = fake.members[1], fake.members[2]
    a.redirect_to, b.redirect_to = b.address, a.address
    async with CoordinatorClient([a.address], timeout=0.5, backoff=FAST) as client:
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable) as caught:
            await client.acquire("jobs/a", "me", ttl=5)
        elapsed = time.monotonic() - started
    # The last attempt may have been cut short by the deadline itself.
    assert caught.value.code in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert elapsed <= 0.5 + SLACK
    # It kept trying (with backoff) rather than giving up at the first loop.
    assert len(fake.calls) > 4


async def test_no_leader_anywhere_is_unavailable_within_the_deadline(fake: FakeCluster) -> None:
    fake.elect(None)
    async with CoordinatorClient(fake.endpoints, timeout=0.4, backoff=FAST) as client:
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable) as caught:
            await client.get("jobs/a")
        assert time.monotonic() - started <= 0.4 + SLACK
    assert caught.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_every_member_hung_ends_exactly_at_the_deadline(fake: FakeCluster) -> None:
    for member in fake.members:
        member.hung = True
    async with CoordinatorClient(fake.endpoints, timeout=0.5, attempt_timeout=5.0) as client:
        started = time.monotonic()
        with pytest.raises(LeaseUnavailable) as caught:
            await client.acquire("jobs/a", "me", ttl=5)
        elapsed = time.monotonic() - started
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.45 <= elapsed <= 0.5 + SLACK


async def test_an_acquire_that_waits_gets_room_beyond_the_attempt_timeout(
    fake: FakeCluster,
) -> None:
    async with CoordinatorClient(fake.endpoints, attempt_timeout=0.2, backoff=FAST) as client:
        first = await client.acquire("jobs/a", "one", ttl=0.6)
        assert first.acquired
        # Freed by expiry after 0.6 s, longer than one plain attempt may take.
        second = await client.acquire("jobs/a", "two", ttl=5, wait=2.0)
    assert second.acquired
    assert second.lease is not None
    assert second.lease.token == 2


async def test_refusals_are_typed_and_not_retried(fake: FakeCluster) -> None:
    async with CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        with pytest.raises(RequestRejected) as caught:
            await client.remove_member("9")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert len(fake.calls) == 1


async def test_a_call_that_ran_out_of_time_on_a_silent_leader_sends_the_next_call_elsewhere(
    fake: FakeCluster,
) -> None:
    old, new = fake.members[0], fake.members[1]
    async with CoordinatorClient(fake.endpoints, attempt_timeout=2.0, backoff=FAST) as client:
        await client.get("jobs/a")
        assert client.transport.leader == old.address
        old.hung = True  # paused: its sockets stay open, it just never answers
        fake.elect(new.id)
        # Too short to split: its only attempt uses the whole deadline.
        with pytest.raises(LeaseUnavailable):
            await client.get("jobs/a", timeout=0.2)
        fake.calls.clear()
        await client.get("jobs/a")
    assert fake.calls[0][0] != old.id, fake.calls
    assert fake.calls[-1] == (new.id, "Get")


async def test_a_deadline_shorter_than_one_attempt_still_reaches_a_second_member(
    fake: FakeCluster,
) -> None:
    old, new = fake.members[0], fake.members[1]
    async with CoordinatorClient(fake.endpoints, attempt_timeout=2.0, backoff=FAST) as client:
        granted = await client.acquire("jobs/a", "me", ttl=5)
        assert granted.lease is not None
        old.hung = True
        fake.elect(new.id)
        # What a held 3 s lease has left when it renews (0.57 x TTL): less than one
        # attempt timeout, so a single attempt would have spent it all on the old leader.
        renewed = await client.renew("jobs/a", "me", granted.lease.token, timeout=1.7)
    assert renewed.renewed
    assert [member for member, _ in fake.calls[-2:]] == [old.id, new.id]


async def test_a_redirect_to_a_silent_member_is_not_followed_before_the_others_are_tried(
    fake: FakeCluster,
) -> None:
    old, lagging, new = fake.members
    async with CoordinatorClient(fake.endpoints, attempt_timeout=2.0, backoff=FAST) as client:
        await client.get("jobs/a")
        old.hung = True
        fake.elect(new.id)
        # A follower that has not noticed the election still names the old leader.
        lagging.redirect_to = old.address
        fake.calls.clear()
        await client.get("jobs/a", timeout=1.7)
    assert [member for member, _ in fake.calls] == [old.id, lagging.id, new.id]


async def test_a_campaign_waiting_on_a_silent_leader_moves_to_the_one_elected_meanwhile(
    fake: FakeCluster,
) -> None:
    old, new = fake.members[0], fake.members[1]
    async with CoordinatorClient(fake.endpoints, backoff=FAST) as client:
        await client.get("jobs/a")
        old.hung = True
        fake.elect(new.id)
        # Campaign says nothing until elected, so silence alone cannot condemn `old`.
        key = await client.campaign_once("scheduler", "a", b"", ttl=5, timeout=10)
    assert key.candidate_id == "a"
    campaigns = [member for member, method in fake.calls if method == "Campaign"]
    assert campaigns == [old.id, new.id]


async def test_cluster_changes_carry_the_admin_credential(fake: FakeCluster) -> None:
    fake.admin_token = "s3cret"  # nosec B105 (a test value)
    async with CoordinatorClient(fake.endpoints, backoff=FAST) as anonymous:
        with pytest.raises(RequestRejected) as caught:
            await anonymous.transfer_leadership()
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        # Reads stay open.
        assert len(await anonymous.members()) == 3
    async with CoordinatorClient(fake.endpoints, backoff=FAST, admin_token="s3cret") as admin:
        added = await admin.add_member("9", "127.0.0.1:1", "127.0.0.1:2")
        assert added.added is not None
        await admin.remove_member("9")
        moved = await admin.transfer_leadership()
    assert moved.previous_leader_id == fake.members[0].id
