"""The session cache: an explicit idle TTL and a maximum count (M-5).

Every way a session ends goes through Session.close (process group killed,
directory removed): StopTranscode, expiry (a reaper task), eviction of the
least recently used session when the cache is full, and service shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from marquee_media.transcode.processes import kill_group_id
from marquee_media.transcode.session import PID_FILE, Session

_log = structlog.get_logger("marquee_media.transcode")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


class UnknownSession(Exception):
    pass


class NotYourSession(Exception):
    pass


class SessionCache:
    def __init__(self, root: Path, max_sessions: int) -> None:
        self.root = Path(root).absolute()
        self.max_sessions = max_sessions
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        # Directories of sessions still starting (source copy, probe): not orphans.
        self._preparing: set[str] = set()

    def new_directory(self) -> tuple[str, Path]:
        """A fresh session directory; `added` or `abandoned` must follow."""
        session_id = secrets.token_urlsafe(12)
        directory = self.root / session_id
        (directory / "out").mkdir(parents=True)
        self._preparing.add(session_id)
        return session_id, directory

    def abandoned(self, session_id: str) -> None:
        self._preparing.discard(session_id)

    async def add(self, session: Session) -> None:
        evicted: list[Session] = []
        async with self._lock:
            while len(self._sessions) >= self.max_sessions:
                _, oldest = self._sessions.popitem(last=False)
                evicted.append(oldest)
            self._sessions[session.session_id] = session
            self._preparing.discard(session.session_id)
        for old in evicted:
            _log.info("transcode session evicted", session_id=old.session_id)
            await old.close()

    def get(self, session_id: str, owner: str) -> Session:
        """The caller's session, marked used now."""
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(session_id)
        if session.owner != owner:
            raise NotYourSession(session_id)
        session.touch()
        self._sessions.move_to_end(session_id)
        return session

    async def stop(self, session_id: str, owner: str) -> bool:
        session = self._sessions.get(session_id)
        if session is None:
            return False
        if session.owner != owner:
            raise NotYourSession(session_id)
        self._sessions.pop(session_id, None)
        await session.close()
        return True

    def sessions(self) -> Mapping[str, Session]:
        return self._sessions

    def start_reaper(self, interval: float) -> None:
        self._reaper = asyncio.create_task(self._reap(interval), name="transcode-reaper")

    async def _reap(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.expire()

    async def expire(self) -> int:
        now = time.monotonic()
        expired = [s for s in self._sessions.values() if s.expires_in(now) <= 0]
        for session in expired:
            if self._sessions.pop(session.session_id, None) is not None:
                _log.info("transcode session expired", session_id=session.session_id)
                await session.close()
        return len(expired)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions))

    def sweep_orphans(self, *, at_startup: bool, min_age: float = 0.0) -> int:
        """Remove session directories nobody serves; how many were removed.

        Sessions live in memory, so at startup every directory under the root was
        left by a previous process (kill -9): its ffmpeg group, if still an ffmpeg
        of that directory, is killed and the directory removed. Later (the
        periodic job) a directory is an orphan only if it is not ours, older than
        `min_age`, and no live ffmpeg writes into it (another replica's, on a
        shared disk, is left alone).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        now = time.time()
        removed = 0
        for directory in self.root.iterdir():
            name = directory.name
            if not directory.is_dir() or name in self._sessions or name in self._preparing:
                continue
            try:
                if now - directory.stat().st_mtime < min_age:
                    continue
            except FileNotFoundError:
                continue
            pgid = _recorded_live_group(directory)
            if pgid is not None:
                if not at_startup:
                    continue
                kill_group_id(pgid)
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
        return removed


def _recorded_live_group(directory: Path) -> int | None:
    """The process group recorded in `directory` if it still leads an ffmpeg of it."""
    try:
        pgid = int((directory / PID_FILE).read_text())
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
        leads = os.getpgid(pgid) == pgid
    except (OSError, ValueError):
        return None
    return pgid if leads and str(directory).encode() in cmdline else None
