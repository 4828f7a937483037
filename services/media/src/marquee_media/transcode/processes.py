"""ffmpeg/ffprobe children: each in its own process group, killed as a group.

Spawned with subprocess.Popen, not the event loop's subprocess support: the
service runs on uvloop, whose spawn is a real fork(), and grpc's at-fork
handlers can crash or hang a forked child while grpc threads are busy.
Popen without preexec_fn/user/group uses vfork and runs no handler. The exit
is awaited through a pidfd on the loop, so no thread is held per process.

A group kill reaches every process ffmpeg might start. Where util-linux's
setpriv exists, children also get a death signal, so a media process killed
with -9 does not leave them running (the startup sweep removes their files).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
from typing import IO


def _death_signal_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    # The death signal fires when the spawning *thread* ends: only the main thread
    # lives as long as the process.
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


def spawn(argv: list[str], *, stdout: IO[bytes], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*_death_signal_prefix(), *argv],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,  # its own process group, to kill as a whole
    )


async def wait_exit(process: subprocess.Popen[bytes]) -> int:
    """The exit code, once the process has ended (reaped here)."""
    code = process.poll()
    if code is not None:
        return code
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return process.wait()
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await ended
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return process.wait()


async def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await wait_exit(process)


def kill_group_id(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
