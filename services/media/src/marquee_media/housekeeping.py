"""The periodic housekeeping job: stale uploads aborted, orphaned transcode files removed.

It runs under a coordinator lease (marquee-jobs), so one replica does it at a
time: stale multipart uploads live in the shared bucket, and sweeping them
from several replicas at once would only repeat the work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import asyncpg
import structlog

from marquee_jobs.leases import Lease
from marquee_jobs.periodic import PeriodicJob
from marquee_media.settings import MediaSettings
from marquee_media.storage import ObjectStore, StorageError
from marquee_media.transcode.sessions import SessionCache

JOB_NAME = "media-housekeeping"
_log = structlog.get_logger("marquee_media.housekeeping")


def housekeeping_job(
    settings: MediaSettings, store: ObjectStore, sessions: SessionCache
) -> Callable[[asyncpg.Pool], PeriodicJob]:
    async def work(lease: Lease) -> None:
        try:
            aborted = await store.abort_stale_uploads(
                dt.timedelta(seconds=settings.stale_upload_age)
            )
        except StorageError as exc:
            _log.warning("stale uploads not swept", error=str(exc))
            aborted = 0
        removed = await asyncio.to_thread(
            sessions.sweep_orphans, at_startup=False, min_age=settings.orphan_dir_age
        )
        if aborted or removed:
            _log.info("housekeeping", stale_uploads_aborted=aborted, orphan_dirs_removed=removed)

    def build(_pool: asyncpg.Pool) -> PeriodicJob:
        return PeriodicJob(JOB_NAME, work, interval=settings.housekeeping_interval)

    return build
