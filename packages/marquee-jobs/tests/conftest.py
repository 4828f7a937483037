from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from jobs_cluster import Cluster
from scratch_db import scratch_database

from marquee_jobs import MIGRATIONS
from marquee_migrations import Migrator


@pytest.fixture
async def db_url(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as url:
        yield url


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh database holding the queue's tables."""
    await Migrator(db_url, MIGRATIONS).up()
    async with asyncpg.create_pool(db_url, min_size=1, max_size=8) as created:
        yield created


@pytest.fixture(scope="session")
async def coordinator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """A real 3-node coordinator with fast Raft timing, shared by the session's tests."""
    cluster = Cluster(tmp_path_factory.mktemp("coordinator"))
    cluster.start()
    try:
        await cluster.wait_for_leader()
        yield cluster
    finally:
        cluster.close()
