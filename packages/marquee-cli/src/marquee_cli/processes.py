"""Child processes of the launcher: spawned so they cannot outlive it, logged to files."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from marquee_cli.endpoints import now
from marquee_localservers.spawning import child_argv

# Marks where each run starts in a log that is appended to across runs.
RUN_MARKER = "=== marquee up"


def mark_run(log_path: Path, title: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"{RUN_MARKER} {title} {now().isoformat(timespec='seconds')} ===\n")


def spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log_path`.

    The child gets its own process group so a terminal's Ctrl-C reaches only
    the launcher, which then stops the services in order. It gets SIGTERM when
    the launcher dies, rather than SIGKILL, so that even a `kill -9` of the
    launcher lets a service drain and a coordinator flush its journal. The
    kernel ties that signal to the spawning *thread*: the launcher's main
    thread spawns and owns every child (`marquee_localservers.spawning`).
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            child_argv(argv, death_signal=signal.SIGTERM),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )


def python_module_argv(module: str) -> list[str]:
    """Run a service with the launcher's own interpreter, i.e. the same venv."""
    return [sys.executable, "-m", module]


def log_tail(log_path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines this run wrote to `log_path` (nothing from earlier runs)."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    current = text.splitlines()
    for index in range(len(current) - 1, -1, -1):
        if current[index].startswith(RUN_MARKER):
            current = current[index + 1 :]
            break
    return current[-lines:]


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"
