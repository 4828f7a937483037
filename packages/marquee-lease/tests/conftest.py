from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_coordinator import FakeCluster


@pytest.fixture
async def fake() -> AsyncIterator[FakeCluster]:
    cluster = FakeCluster()
    await cluster.start(3)
    try:
        yield cluster
    finally:
        await cluster.stop()
