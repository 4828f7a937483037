"""One transcode session: its ffmpeg process group, its directory, its progress."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from marquee.media.v1 import media_pb2
from marquee_media.transcode.processes import kill_group, wait_exit

PID_FILE = "ffmpeg.pgid"  # read by the startup sweep after a kill -9
LOG_FILE = "ffmpeg.log"
PROGRESS_FILE = "progress.txt"


@dataclass
class Session:
    session_id: str
    owner: str
    source_key: str
    directory: Path
    variants: list[str]
    source_duration: float | None
    ttl: float
    process: subprocess.Popen[bytes]
    last_used: float = field(default_factory=time.monotonic)
    state: int = media_pb2.TRANSCODE_STATE_RUNNING
    error: str = ""
    done_us: int = 0  # set once ffmpeg has finished
    _watcher: asyncio.Task[None] | None = None
    _closed: bool = False

    @property
    def out_dir(self) -> Path:
        return self.directory / "out"

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def expires_in(self, now: float) -> float:
        return self.last_used + self.ttl - now

    def watch(self) -> None:
        self._watcher = asyncio.create_task(self._follow(), name=f"ffmpeg-{self.session_id}")

    async def _follow(self) -> None:
        code = await wait_exit(self.process)
        if self._closed:
            return
        if code == 0:
            self.state = media_pb2.TRANSCODE_STATE_COMPLETED
            self.done_us = max(self.transcoded_us(), int((self.source_duration or 0) * 1e6))
        else:
            self.state = media_pb2.TRANSCODE_STATE_FAILED
            self.error = _log_tail(self.directory / LOG_FILE) or f"ffmpeg exited with {code}"

    def transcoded_us(self) -> int:
        """Media time done: the last out_time_us in ffmpeg's -progress file."""
        if self.done_us:
            return self.done_us
        # The file's tail, read in place: a few KiB from the page cache.
        try:
            with (self.directory / PROGRESS_FILE).open("rb") as progress:
                progress.seek(0, 2)
                progress.seek(max(0, progress.tell() - 4096))
                tail = progress.read().decode(errors="replace")
        except OSError:
            return 0
        for line in reversed(tail.splitlines()):
            key, _, value = line.partition("=")
            if key == "out_time_us" and value.strip().isdigit():
                return int(value)
        return 0

    @property
    def running(self) -> bool:
        # A closed session (stopped, evicted, expired) produces nothing more.
        return not self._closed and self.state == media_pb2.TRANSCODE_STATE_RUNNING

    async def close(self) -> None:
        """Kill ffmpeg's process group, then remove the session's files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await kill_group(self.process)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await asyncio.to_thread(shutil.rmtree, self.directory, True)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-3:])[:500]
