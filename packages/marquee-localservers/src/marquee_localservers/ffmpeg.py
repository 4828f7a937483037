"""Finding (or apt-installing) ffmpeg and ffprobe."""

from __future__ import annotations

from marquee_localservers.apt import find_or_install


def find_ffmpeg() -> tuple[str, str]:
    """Paths of `ffmpeg` and `ffprobe`: from PATH, else apt-installed when we are root.

    Debian's `ffmpeg` package holds both. Set MARQUEE_NO_APT=1 to forbid the install.
    """
    return (
        find_or_install("ffmpeg", "ffmpeg", "/usr/bin/ffmpeg"),
        find_or_install("ffprobe", "ffmpeg", "/usr/bin/ffprobe"),
    )
