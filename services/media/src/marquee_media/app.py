"""gRPC wiring of the media service: store, token verifier, and shutdown order."""

from __future__ import annotations

import asyncio

import grpc
import structlog

from marquee.media.v1 import media_pb2_grpc
from marquee_authn import GrpcJwksSource, TokenVerifier
from marquee_jobs.service import start_job_runtime
from marquee_media.fetch import ImageFetcher
from marquee_media.housekeeping import housekeeping_job
from marquee_media.servicer import MediaServicer
from marquee_media.settings import MediaSettings
from marquee_media.storage.factory import open_store
from marquee_media.thumbnails import ThumbnailRenderer, release_libvips
from marquee_media.transcode.rpcs import Transcoder
from marquee_media.transcode.sessions import SessionCache
from marquee_platform import ServiceContext

SERVICE_NAME = "marquee.media.v1.MediaService"
_log = structlog.get_logger("marquee_media")


async def register(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    settings = ctx.settings
    assert isinstance(settings, MediaSettings)
    auth_channel = grpc.aio.insecure_channel(settings.auth_address)

    async def close_auth_channel() -> None:
        await auth_channel.close()

    ctx.on_shutdown(close_auth_channel)
    verifier = TokenVerifier(GrpcJwksSource(auth_channel), issuer=settings.token_issuer)
    store = await open_store(settings)
    ctx.on_shutdown(store.close)
    fetcher = ImageFetcher(settings)
    ctx.on_shutdown(fetcher.close)
    renderer = ThumbnailRenderer(settings.thumbnail_concurrency)

    async def release_images() -> None:
        # After the drain: no render is running any more.
        release_libvips(shutdown=settings.libvips_shutdown)

    ctx.on_shutdown(release_images)
    sessions = SessionCache(settings.transcode_root, settings.transcode_max_sessions)
    # Sessions live in memory: whatever is on disk now, a previous process left.
    orphans = await asyncio.to_thread(sessions.sweep_orphans, at_startup=True)
    if orphans:
        _log.info("removed orphaned transcode directories", count=orphans)
    sessions.start_reaper(min(1.0, settings.transcode_ttl / 4))
    # After the drain: every session's ffmpeg group killed, its files removed.
    ctx.on_shutdown(sessions.close)
    transcoder = Transcoder(settings, store, sessions)
    if settings.database_url is not None and settings.coordinator_endpoints:
        await start_job_runtime(
            ctx,
            str(settings.database_url),
            settings.coordinator_endpoints,
            periodic=[housekeeping_job(settings, store, sessions)],
            migrate=settings.migrate_on_start,
        )
    else:
        _log.info("no database_url/coordinator_endpoints: housekeeping runs at startup only")
    media_pb2_grpc.add_MediaServiceServicer_to_server(
        MediaServicer(settings, store, verifier, fetcher, renderer, transcoder), server
    )
    return [SERVICE_NAME]
