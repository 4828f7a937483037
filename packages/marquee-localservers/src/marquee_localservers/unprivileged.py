"""Running a server as an unprivileged account when we are root (PostgreSQL refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

_OWN_ACCOUNT = "marquee-pg"


def service_account() -> pwd.struct_passwd:
    """Debian's `postgres` account if present, else our own system account, else `nobody`."""
    for name in ("postgres", _OWN_ACCOUNT):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    if shutil.which("useradd"):
        # A parallel session may create it at the same moment: then useradd fails
        # but the account exists, which is all we need.
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _OWN_ACCOUNT,
            ],
            capture_output=True,
            check=False,
        )
        try:
            return pwd.getpwnam(_OWN_ACCOUNT)
        except KeyError:
            pass
    return pwd.getpwnam("nobody")


def grant_traverse(path: Path) -> None:
    """Let every account search (not list) each ancestor of `path`.

    Directories such as /root or pytest's /tmp/pytest-of-root are 0700, so the
    unprivileged server could not reach its data dir or binaries otherwise.
    """
    for ancestor in Path(path).absolute().parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(ancestor, stat.S_IMODE(mode) | stat.S_IXOTH)
