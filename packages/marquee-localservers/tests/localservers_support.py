"""Helpers shared by the localservers tests (a unique module name: tests dirs share sys.path)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil


def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` has exited (a zombie that nobody reaps counts as exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def postgres_dir() -> Iterator[Path]:
    """A data dir outside /tmp/pytest-of-root: as root, postgres runs as another account
    that must traverse the parents, and every new pytest session of root resets that
    tree to 0700 (other sessions run in parallel on this machine)."""
    with tempfile.TemporaryDirectory(prefix="marquee-pg-test-", ignore_cleanup_errors=True) as d:
        yield Path(d)
