"""Helpers shared by the localservers tests (a unique module name: tests dirs share sys.path)."""

from __future__ import annotations

import time

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
