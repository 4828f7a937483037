"""CoordinatorLeases against a real 3-node coordinator: one holder, growing tokens, loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from jobs_helpers import eventually, running

from marquee_jobs import Lease, LeaseBusy, PeriodicJob, PeriodicRunner
from marquee_jobs.coordinator import CoordinatorLeases
from marquee_lease import Backoff, CoordinatorClient
from marquee_testing.coordinator import CoordinatorCluster

TTL = 1.5


@pytest.fixture
async def client(coordinator_cluster: CoordinatorCluster) -> AsyncIterator[CoordinatorClient]:
    async with CoordinatorClient(
        coordinator_cluster.endpoints, timeout=2.0, backoff=Backoff(initial=0.05, maximum=0.3)
    ) as created:
        yield created


async def test_one_holder_at_a_time_and_the_next_one_gets_a_higher_token(
    client: CoordinatorClient,
) -> None:
    first, second = (CoordinatorLeases(client, holder_id=h) for h in ("unit-a", "unit-b"))
    async with first.hold("unit/one", TTL) as held:
        assert held.valid()
        with pytest.raises(LeaseBusy, match="'unit/one' not acquired"):
            async with second.hold("unit/one", TTL):
                pass
        info = await client.get("unit/one")
        assert info is not None
        assert (info.holder_id, info.token) == ("unit-a", held.token)
        # Held past several TTLs: the renewals in the background keep it.
        await asyncio.sleep(2 * TTL)
        assert held.valid()
    # Leaving the block released it, so the next holder need not wait for a TTL.
    async with second.hold("unit/one", TTL) as again:
        assert again.token > held.token
    assert await client.get("unit/one") is None


async def test_losing_the_lease_cancels_the_running_work_at_once(
    client: CoordinatorClient,
) -> None:
    tokens: list[int] = []
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work(lease: Lease) -> None:
        tokens.append(lease.token)
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    leases = CoordinatorLeases(client, holder_id="unit-runner")
    job = PeriodicJob("unit-lost", work, interval=60, lease_ttl=TTL)
    async with running(PeriodicRunner(leases, [job], retry_interval=0.1).run()):
        await asyncio.wait_for(started.wait(), 10)
        # An operator takes the lease away: the holder's next renewal (within
        # TTL/3) is refused, and the work must stop then, not at its own pace.
        assert await client.release("jobs/unit-lost", "unit-runner", tokens[0])
        await asyncio.wait_for(cancelled.wait(), TTL)

        async def back_with_a_higher_token() -> bool:
            return len(tokens) > 1

        # The runner keeps trying and holds it again, with the next token.
        await eventually(back_with_a_higher_token, timeout=5)
        assert tokens[1] > tokens[0]
