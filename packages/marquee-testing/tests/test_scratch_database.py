from __future__ import annotations

import asyncpg


async def test_scratch_database_is_a_fresh_empty_database(
    scratch_database_url: str, database_url: str
) -> None:
    connection = await asyncpg.connect(scratch_database_url, timeout=10)
    try:
        assert (await connection.fetchval("SELECT current_database()")).startswith("scratch_")
        assert await connection.fetch("SELECT 1 FROM pg_tables WHERE schemaname = 'public'") == []
    finally:
        await connection.close()
    assert scratch_database_url != database_url
