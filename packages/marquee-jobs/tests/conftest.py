from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from marquee_jobs import MIGRATIONS
from marquee_migrations import Migrator


@pytest.fixture
async def pool(scratch_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh database holding the queue's tables."""
    await Migrator(scratch_database_url, MIGRATIONS).up()
    async with asyncpg.create_pool(scratch_database_url, min_size=1, max_size=8) as created:
        yield created
