"""Finding (or apt-installing) ffmpeg and ffprobe."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.redis import _APT_LOCK, _apt_install


def find_ffmpeg() -> tuple[str, str]:
    """Paths of `ffmpeg` and `ffprobe`: from PATH, else apt-installed when we are root.

    Set MARQUEE_NO_APT=1 to forbid the install.
    """
    found = _both()
    if found:
        return found
    if os.environ.get("MARQUEE_NO_APT"):
        raise BackendUnavailable("ffmpeg is not on PATH and MARQUEE_NO_APT is set")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BackendUnavailable(
            "ffmpeg is not on PATH; install it (Debian: apt-get install ffmpeg)"
        )
    lock_dir = Path("/var/lock") if Path("/var/lock").is_dir() else Path(tempfile.gettempdir())
    lock = os.open(lock_dir / _APT_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _both()
        if found:
            return found
        _apt_install("ffmpeg", "/usr/bin/ffmpeg")
        return "/usr/bin/ffmpeg", "/usr/bin/ffprobe"
    finally:
        os.close(lock)


def _both() -> tuple[str, str] | None:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    return (ffmpeg, ffprobe) if ffmpeg and ffprobe else None
