"""ffmpeg/ffprobe children: each in its own process group, killed as a group.

A group kill reaches every process ffmpeg might start. Where util-linux's
setpriv exists, children also get a death signal, so a media process killed
with -9 does not leave them running (the startup sweep removes their files).
Never preexec_fn: grpc's at-fork handlers can deadlock inside a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
from typing import Any


def _death_signal_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    # The death signal fires when the spawning *thread* ends: only the main thread
    # lives as long as the process.
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


async def spawn(argv: list[str], **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *_death_signal_prefix(),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # its own process group, to kill as a whole
        **kwargs,
    )


async def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def kill_group_id(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
