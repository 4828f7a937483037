"""`LeaseSource` over the coordinator client (`marquee_lease`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from marquee_jobs.leases import Lease, LeaseBusy
from marquee_lease import CoordinatorClient, LeaseTaken, LeaseUnavailable


class CoordinatorLeases:
    """Leases from the coordinator: one holder per name cluster-wide, fencing tokens that grow."""

    def __init__(self, client: CoordinatorClient, *, holder_id: str | None = None) -> None:
        self.client = client
        self.holder_id = holder_id

    @asynccontextmanager
    async def hold(self, name: str, ttl: float) -> AsyncIterator[Lease]:
        async with AsyncExitStack() as stack:
            try:
                held = await stack.enter_async_context(
                    self.client.lease(name, ttl, holder_id=self.holder_id)
                )
            except (LeaseTaken, LeaseUnavailable) as exc:
                # Only the acquisition maps to LeaseBusy; errors of the body pass through.
                raise LeaseBusy(name, str(exc)) from exc
            yield held
