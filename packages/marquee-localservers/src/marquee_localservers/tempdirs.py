"""Temporary data dirs that a server running under another account can reach."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def server_data_dir(prefix: str = "marquee-") -> Iterator[Path]:
    """A fresh directory, removed afterwards, outside pytest's basetemp.

    As root, PostgreSQL runs under an unprivileged account that must traverse
    every parent directory, and each new pytest session of the same user resets
    /tmp/pytest-of-<user> to 0700, which would cut off a server still running.
    """
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as path:
        yield Path(path)
