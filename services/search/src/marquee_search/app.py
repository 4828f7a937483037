"""gRPC wiring of the search service: the backend the settings choose, and its shutdown."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc

from marquee.search.v1 import search_pb2_grpc
from marquee_jobs import MIGRATIONS as JOB_MIGRATIONS
from marquee_jobs import Backoff, Job, Kind, Worker, cleanup_job
from marquee_jobs.service import STOP_WAIT, PeriodicFactory, start_job_runtime
from marquee_migrations import migrate_on_start
from marquee_platform import ServiceContext
from marquee_search import demo, reindex
from marquee_search.backend import SearchBackend
from marquee_search.embedded import EmbeddedBackend
from marquee_search.migrations import MIGRATIONS
from marquee_search.reindex import Reindexer
from marquee_search.servicer import SearchServicer
from marquee_search.settings import SearchSettings
from marquee_search.typesense_backend import TypesenseBackend
from marquee_search.typesense_backend.connection import Limits

SERVICE_NAME = "marquee.search.v1.SearchService"
# The worker's listener, a running job and its progress writes, the RPCs.
POOL_SIZE = 6


async def _worker_only(ctx: ServiceContext, dsn: str, kind: Kind, *, migrate: bool) -> asyncpg.Pool:
    """The reindex worker without a coordinator (start_job_runtime insists on one, for
    leases that only periodic jobs need): the same steps, minus the periodic runner."""
    await migrate_on_start(dsn, JOB_MIGRATIONS, apply=migrate)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=POOL_SIZE)
    assert pool is not None
    worker = ctx.spawn(Worker(pool, [kind], reindex.QUEUES).run(), name="jobs worker")

    async def stop_worker() -> None:
        # Before the drain, as start_job_runtime does: a running job goes back to the queue.
        worker.cancel()
        await asyncio.wait([worker], timeout=STOP_WAIT)

    ctx.on_stop(stop_worker)
    ctx.on_shutdown(pool.close)
    return pool


async def make_backend(settings: SearchSettings) -> SearchBackend:
    if settings.backend == "typesense":
        limits = Limits(
            connect_timeout=settings.typesense_connect_timeout,
            read_timeout=settings.typesense_read_timeout,
            retries=settings.typesense_retries,
            retry_backoff=settings.typesense_retry_backoff,
            breaker_threshold=settings.typesense_breaker_threshold,
            breaker_reset_timeout=settings.typesense_breaker_reset_timeout,
        )
        return TypesenseBackend(
            settings.typesense_url,
            settings.typesense_api_key.get_secret_value(),
            limits,
            settings.typesense_max_candidates,
        )
    return await EmbeddedBackend.open(settings.data_dir)


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, SearchSettings)
    backend = await make_backend(settings)
    ctx.on_shutdown(backend.close)  # after the drain: in-flight writes finish their commit
    reindexer = None
    if settings.database_url is not None:
        reindexer = await start_reindexing(ctx, settings, backend)
    if settings.demo_catalogue:
        await demo.load_if_absent(backend, ctx.log)
    search_pb2_grpc.add_SearchServiceServicer_to_server(
        SearchServicer(backend, settings.max_documents, reindexer), server
    )
    return [SERVICE_NAME]


async def start_reindexing(
    ctx: ServiceContext, settings: SearchSettings, backend: SearchBackend
) -> Reindexer:
    """The job runtime with the reindex kind, on the database the settings name."""
    dsn = str(settings.database_url)
    await migrate_on_start(dsn, MIGRATIONS, apply=settings.migrate_on_start)
    # The handler needs the runtime's pool, which exists only once the runtime runs.
    ready: asyncio.Future[Reindexer] = asyncio.get_running_loop().create_future()

    async def handle(job: Job) -> None:
        await (await ready).run(job)

    kind = Kind(
        reindex.KIND,
        handle,
        max_attempts=settings.reindex_max_attempts,
        backoff=Backoff(1.0, 2.0, 60.0),
        timeout=settings.reindex_timeout,
    )
    if settings.coordinator_endpoints:
        periodic: list[PeriodicFactory] = [cleanup_job] if settings.jobs_cleanup else []
        runtime = await start_job_runtime(
            ctx,
            dsn,
            settings.coordinator_endpoints,
            periodic=periodic,
            kinds=[kind],
            queues=reindex.QUEUES,
            migrate=settings.migrate_on_start,
            pool_size=POOL_SIZE,
        )
        pool = runtime.pool
    else:
        pool = await _worker_only(ctx, dsn, kind, migrate=settings.migrate_on_start)
    reindexer = Reindexer(pool, backend, ctx.log)
    ready.set_result(reindexer)
    return reindexer
