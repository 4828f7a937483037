"""Auth's connection pool, and what a query helper takes: a plain connection or a pooled one."""

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query.

    By default every release sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL;`: one more round trip per query helper, which doubled
    what a password login costs PostgreSQL. Auth leaves none of that state on a
    pooled connection: its advisory locks are transaction-scoped, it LISTENs on a
    connection of its own (PolicyEngine), sets no session variable and opens
    cursors only inside transactions (test_auth_pool checks the sources for it).
    asyncpg still rolls back a transaction left open before calling this.
    """


async def create_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, reset=_keep_session)
    assert pool is not None  # None only when the pool is not awaited
    return pool
