"""Start-up without the optional extras that libraries import when they find them.

Some libraries import packages they can do without, just because they are
installed: structlog imports rich (for the console renderer's tracebacks) and
httpx imports its command line (click, pygments and rich), ~40 and ~100 ms of
a service's start-up. No service uses them. `extras_hidden()` hides them
while a service's modules are imported, so that those libraries take their
"not installed" path (structlog then formats tracebacks plainly; JSON logs
use the standard library's format either way). Rich is kept where it shows:
console logs on a terminal.

Nothing stays hidden after the block: anything importing rich or click later
gets the real one.

`service_modules_loading()` also holds the garbage collector off while the
modules load. Imports build a few hundred thousand objects that live as long
as the process; with the collector on, young collections walk them again and
again as they age, and a full one walks them all: 30-100 ms of each
service's CPU before it serves (docs/benchmarks.md, "Start-up"). Collected
once at the end of the block instead, and frozen, as the platform freezes
what start-up built (server.py).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


def rich_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Console logs on a terminal: rich's tracebacks are worth their import there."""
    console = any(
        key.startswith("MARQUEE_") and key.endswith("LOG_FORMAT") and value == "console"
        for key, value in environ.items()
    )
    return console and sys.stderr is not None and sys.stderr.isatty()


@contextmanager
def extras_hidden() -> Iterator[None]:
    """While in the block, `import rich` (unless rich_wanted()) and `import click` fail."""
    names = ["click"] if rich_wanted() else ["click", "rich"]
    hidden = [name for name in names if name not in sys.modules]
    # A None entry makes `import name` raise ImportError, the error these libraries
    # expect when the package is not installed.
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@contextmanager
def service_modules_loading() -> Iterator[None]:
    """extras_hidden(), with no garbage collection until the block ends; then one, and freeze.

    The collector is on again after the block (if it was before), even if the
    block raised: a service's __main__ runs for the life of the process.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with extras_hidden():
            yield
    finally:
        gc.collect()
        gc.freeze()
        if was_enabled:
            gc.enable()


def import_structlog() -> None:
    """Import structlog with the extras hidden, if nothing has imported it yet."""
    if "structlog" not in sys.modules:
        with extras_hidden():
            import structlog  # noqa: F401
