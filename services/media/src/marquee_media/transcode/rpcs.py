"""The transcode RPCs: start (copy source, probe, spawn ffmpeg), report, serve, stop."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from marquee.media.v1 import media_pb2
from marquee_media.keys import check_key
from marquee_media.objects import CHUNK_BYTES
from marquee_media.settings import MediaSettings
from marquee_media.status import invalid, storage_errors
from marquee_media.storage import ObjectStore
from marquee_media.transcode import plan
from marquee_media.transcode.probe import ProbeFailed, probe
from marquee_media.transcode.processes import kill_group, spawn
from marquee_media.transcode.session import LOG_FILE, PID_FILE, PROGRESS_FILE, Session
from marquee_media.transcode.sessions import (
    SESSION_ID,
    NotYourSession,
    SessionCache,
    UnknownSession,
)
from marquee_platform.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
_POLL = 0.02  # how often a wait for ffmpeg's next file looks again (one stat)


class Transcoder:
    def __init__(self, settings: MediaSettings, store: ObjectStore, cache: SessionCache) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache

    # -- start ---------------------------------------------------------------

    async def start(
        self, request: media_pb2.StartTranscodeRequest, owner: str
    ) -> media_pb2.StartTranscodeResponse:
        s = self.settings
        check_key(request.source_key, "source_key")
        segment = s.transcode_segment_seconds
        if request.HasField("segment_duration"):
            segment = request.segment_duration.ToTimedelta().total_seconds()
            if not 1 <= segment <= 60:
                raise invalid("invalid request", [("segment_duration", "must be 1..60 s")])
        ttl = s.transcode_ttl
        if request.HasField("ttl"):
            ttl = request.ttl.ToTimedelta().total_seconds()
            if ttl <= 0:
                raise invalid("invalid request", [("ttl", "must be positive")])
            ttl = min(ttl, s.transcode_max_ttl)
        with storage_errors(request.source_key):
            await self.store.stat(request.source_key)
        session_id, directory = self.cache.new_directory()
        try:
            source_path = directory / "source"
            await self._copy_source(request.source_key, source_path)
            try:
                source = await probe(s.ffprobe, source_path)
            except ProbeFailed as exc:
                raise InvalidArgument(
                    f"source is not a playable video: {exc}", [("source_key", str(exc))]
                ) from None
            try:
                chosen = plan.variants(request, source)
            except plan.BadPlan as exc:
                raise invalid("invalid request", [(exc.field, exc.problem)]) from None
            for variant in chosen:
                (directory / "out" / variant.name).mkdir()
            argv = plan.ffmpeg_argv(
                s.ffmpeg,
                directory / PROGRESS_FILE,
                source_path,
                directory / "out",
                chosen,
                source,
                segment,
                realtime=s.transcode_realtime,
            )
            with (directory / LOG_FILE).open("wb") as log:
                process = spawn(argv, stdout=log, stderr=log)
        except BaseException:
            self.cache.abandoned(session_id)
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        (directory / PID_FILE).write_text(str(process.pid))
        session = Session(session_id, owner, request.source_key, directory,
                          [v.name for v in chosen], source.duration, ttl, process)  # fmt: skip
        try:
            session.watch()
            await self.cache.add(session)
        except BaseException:
            await kill_group(process)
            await session.close()
            raise
        return media_pb2.StartTranscodeResponse(session=describe(session))

    async def _copy_source(self, key: str, target: Path) -> None:
        # ffmpeg reads a plain local file: the object is streamed there chunk by chunk.
        with storage_errors(key), target.open("wb") as out:
            meta = await self.store.stat(key)
            async for chunk in self.store.read(key, 0, meta.size, CHUNK_BYTES):
                await asyncio.to_thread(out.write, chunk)

    # -- the rest: every call names a session of the caller --------------------

    def session(self, session_id: str, owner: str) -> Session:
        if not SESSION_ID.fullmatch(session_id):
            raise invalid("invalid request", [("session_id", "not a session id")])
        try:
            return self.cache.get(session_id, owner)
        except UnknownSession:
            raise NotFound(f"no transcode session {session_id!r}") from None
        except NotYourSession:
            raise PermissionDenied("the transcode session belongs to someone else") from None

    async def stop(self, request: media_pb2.StopTranscodeRequest, owner: str) -> bool:
        if not SESSION_ID.fullmatch(request.session_id):
            raise invalid("invalid request", [("session_id", "not a session id")])
        try:
            return await self.cache.stop(request.session_id, owner)
        except NotYourSession:
            raise PermissionDenied("the transcode session belongs to someone else") from None

    async def playlist(
        self, request: media_pb2.GetPlaylistRequest, owner: str
    ) -> media_pb2.GetPlaylistResponse:
        session = self.session(request.session_id, owner)
        variant = request.variant.removesuffix(f"/{plan.PLAYLIST}")
        if variant and variant not in session.variants:
            raise NotFound(f"no variant {request.variant!r}; variants: {session.variants}")
        path = session.out_dir / (f"{variant}/{plan.PLAYLIST}" if variant else plan.MASTER)
        text = await self._wait_for(session, path)
        if text is None:
            self._not_ready(session, "the playlist")
        if variant:
            # Segment URIs become the names GetSegment takes ("720p/seg_00000.ts").
            lines = text.decode().splitlines()
            text = (
                "\n".join(
                    f"{variant}/{line}" if line and not line.startswith("#") else line
                    for line in lines
                ).encode()
                + b"\n"
            )
        return media_pb2.GetPlaylistResponse(playlist=text.decode(), content_type=PLAYLIST_TYPE)

    async def segment(
        self, request: media_pb2.GetSegmentRequest, owner: str
    ) -> AsyncIterator[media_pb2.GetSegmentResponse]:
        session = self.session(request.session_id, owner)
        variant, _, name = request.name.partition("/")
        if variant not in session.variants or not plan.SEGMENT_PATTERN.fullmatch(name):
            raise invalid("invalid request", [("name", "not a segment name of this session")])
        path = session.out_dir / variant / name
        if not await self._exists_soon(session, path):
            self._not_ready(session, f"segment {request.name!r}")
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound(f"segment {request.name!r} is gone (session stopped?)") from None
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
            yield media_pb2.GetSegmentResponse(
                header=media_pb2.SegmentHeader(size=size, content_type=SEGMENT_TYPE)
            )
            left = size
            while left > 0:
                chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield media_pb2.GetSegmentResponse(chunk=chunk)
        finally:
            file.close()

    async def _exists_soon(self, session: Session, path: Path) -> bool:
        """Whether `path` exists, waiting up to segment_wait while ffmpeg still runs."""
        deadline = time.monotonic() + self.settings.segment_wait
        # A stat per poll: cheap enough not to leave the loop for it.
        while not path.exists():  # noqa: ASYNC240
            if not session.running or time.monotonic() >= deadline:
                return path.exists()  # noqa: ASYNC240
            await asyncio.sleep(_POLL)
            session.touch()
        return True

    async def _wait_for(self, session: Session, path: Path) -> bytes | None:
        if not await self._exists_soon(session, path):
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    def _not_ready(self, session: Session, what: str) -> NoReturn:
        if session.state == media_pb2.TRANSCODE_STATE_FAILED:
            raise FailedPrecondition(f"the transcode failed: {session.error}")
        if session.running:
            raise NotFound(f"{what} is not produced yet; try again shortly")
        raise NotFound(f"{what} does not exist")


def describe(session: Session) -> media_pb2.TranscodeSession:
    expires = Timestamp()
    expires.FromSeconds(int(time.time() + session.expires_in(time.monotonic())))
    transcoded = Duration()
    transcoded.FromMicroseconds(session.transcoded_us())
    message = media_pb2.TranscodeSession(
        session_id=session.session_id,
        source_key=session.source_key,
        state=session.state,  # type: ignore[arg-type]
        variants=session.variants,
        transcoded=transcoded,
        expires_at=expires,
        error=session.error,
    )
    if session.source_duration:
        message.source_duration.FromMicroseconds(int(session.source_duration * 1e6))
    return message
