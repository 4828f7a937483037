from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from scratch_db import scratch_database


@pytest.fixture
async def db_url(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as url:
        yield url
