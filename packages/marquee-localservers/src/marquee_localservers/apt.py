"""Finding a binary a test needs, or installing its Debian package with apt as root."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.process import run_quiet

# One apt run at a time across processes: parallel sessions would otherwise trip
# over dpkg's lock or install twice.
_APT_LOCK = "marquee-apt.lock"
APT_TIMEOUT = 600.0


def find_or_install(command: str, package: str, binary: str) -> str:
    """Path of `command` from PATH, else `binary` after `apt-get install package` as root.

    Set MARQUEE_NO_APT=1 to forbid the install.
    """
    found = shutil.which(command)
    if found:
        return found
    if os.environ.get("MARQUEE_NO_APT"):
        raise BackendUnavailable(f"{command} is not on PATH and MARQUEE_NO_APT is set")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BackendUnavailable(
            f"{command} is not on PATH; install it (Debian: apt-get install {package})"
        )
    lock_dir = Path("/var/lock") if Path("/var/lock").is_dir() else Path(tempfile.gettempdir())
    # O_NOFOLLOW, no truncation: the lock dir is world-writable and we are root.
    lock = os.open(lock_dir / _APT_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return shutil.which(command) or apt_install(package, binary)
    finally:
        os.close(lock)


def apt_install(package: str, binary: str) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=120", package]
    result = run_quiet(install, APT_TIMEOUT, env=env)
    if result.returncode != 0:
        # Most often the package lists were never fetched on a fresh machine.
        run_quiet(["apt-get", "update", "-qq"], APT_TIMEOUT, env=env)
        result = run_quiet(install, APT_TIMEOUT, env=env)
    if result.returncode != 0 or not Path(binary).exists():
        detail = result.stderr.strip()[-500:]
        raise BackendUnavailable(f"apt-get install {package} failed: {detail}")
    return binary
