"""Where a job's time goes: round trips, write transactions and WAL per job, both sides.

Drains BENCH_JOBS pre-filled no-op jobs at 1, 4 and 16 workers with the same
code as run.py and counts, per job: client round trips (every statement a
connection sends, through asyncpg's query logger, so BEGIN, COMMIT and the
pool's reset on release count too), write transactions (transaction ids
assigned; each is a commit that waits for its WAL flush) and WAL bytes. Counts,
not times: they do not move with the machine's load.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from types import ModuleType

import asyncpg
import uvloop

from marquee_jobs import MIGRATIONS
from marquee_localservers import PostgresServer
from marquee_migrations import Migrator


def load_run() -> ModuleType:
    """bench/jobs/run.py itself: the drains measured here are the bench's, unchanged."""
    spec = importlib.util.spec_from_file_location("jobs_run", Path(__file__).with_name("run.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = load_run()

XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
LSN = "SELECT pg_current_wal_lsn()::text"
WAL_BYTES = "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint"


async def main() -> None:
    statements = 0

    def count(_query: object) -> None:
        nonlocal statements
        statements += 1

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(count)

    with (
        tempfile.TemporaryDirectory(prefix="marquee-bench-pg-", ignore_cleanup_errors=True) as d,
        PostgresServer(Path(d)) as server,
    ):
        await Migrator(server.url, MIGRATIONS).up()
        size = max(run.LEVELS) + 4
        async with (
            asyncpg.create_pool(server.url, min_size=size, max_size=size) as plain_pool,
            asyncpg.create_pool(server.url, min_size=size, max_size=size, init=init) as pool,
        ):
            await plain_pool.execute(run.PLAIN_TABLE)
            await plain_pool.execute(run.PLAIN_INDEX)
            print(f"{'side':<8} {'workers':>7} {'round trips/job':>16} {'commits/job':>12} "
                  f"{'WAL bytes/job':>14}")  # fmt: skip
            for concurrency in run.LEVELS:
                for side in ("marquee", "plain"):
                    await run.fill(plain_pool)
                    xid = await plain_pool.fetchval(XID)
                    lsn = await plain_pool.fetchval(LSN)
                    statements = 0
                    if side == "marquee":
                        await run.marquee_completion_rate(pool, concurrency)
                    else:
                        await run.plain_completion_rate(pool, concurrency)
                    trips = statements
                    # Less the two reads of the stats themselves, which do not write.
                    xids = await plain_pool.fetchval(XID) - xid
                    wal = await plain_pool.fetchval(WAL_BYTES, await plain_pool.fetchval(LSN), lsn)
                    print(
                        f"{side:<8} {concurrency:>7} {trips / run.JOBS:>16.2f} "
                        f"{xids / run.JOBS:>12.2f} {wal / run.JOBS:>14.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    uvloop.run(main())
