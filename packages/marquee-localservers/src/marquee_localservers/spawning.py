"""Child processes that die with their parent, started without a Python callback in the child.

A `preexec_fn` (or `user=`/`group=`) makes CPython create the child with a real
fork() and run the interpreter's at-fork handlers. grpc registers one, and once
grpc threads are alive in the process it can block inside fork() for good, where
no Python-level timeout can reach it (it hung CI). Without those options CPython
spawns with vfork/posix_spawn and runs no handler. So the death signal and the
switch to an unprivileged account are done by util-linux's `setpriv`, which the
child execs first: `setpriv --pdeathsig TERM [--reuid U --regid G --clear-groups]
-- CMD`. setpriv sets the death signal after changing credentials (a credential
change would clear it), then execs CMD, which keeps it.

The kernel sends the death signal when the *thread* that spawned the child ends,
not the process. So children that must die with the process are spawned from the
main thread, which owns them; from any other thread no death signal is asked for
(the child would be killed as soon as that worker thread ends) and the caller
relies on stopping it explicitly (ServerProcess's atexit hook does).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
import threading
from collections.abc import Sequence

from marquee_localservers.errors import ServerStartError

# $0 is the spawning process's pid; the command follows in "$@". Exit 125 (and
# never run the command) when the spawner is already gone.
_PARENT_CHECK = '[ "$PPID" = "$0" ] || exit 125; exec "$@"'


def _setpriv() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    # Also where util-linux puts it, for callers that run with a narrowed PATH.
    for candidate in (shutil.which("setpriv"), "/usr/bin/setpriv", "/bin/setpriv"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def death_signal_available() -> bool:
    """True when a child spawned from this thread can be tied to its life."""
    return _setpriv() is not None and threading.current_thread() is threading.main_thread()


def child_argv(
    command: Sequence[str],
    *,
    death_signal: signal.Signals | None = signal.SIGTERM,
    run_as: pwd.struct_passwd | None = None,
) -> list[str]:
    """`command`, prefixed so the child gets `death_signal` when we die and runs as `run_as`.

    Pass the result to subprocess without preexec_fn, user, group or extra_groups.
    """
    setpriv = _setpriv()
    prefix: list[str] = []
    guard: list[str] = []
    if death_signal is not None and death_signal_available():
        prefix += ["--pdeathsig", death_signal.name.removeprefix("SIG")]
        # setpriv arms the signal only once it runs: had we died before, none would
        # come. A shell started after that checks we are still its parent, then
        # becomes the command (same pid).
        guard = ["/bin/sh", "-c", _PARENT_CHECK, str(os.getpid())]
    if run_as is not None:
        prefix += [f"--reuid={run_as.pw_uid}", f"--regid={run_as.pw_gid}", "--clear-groups"]
    if not prefix:
        return list(command)
    if setpriv is None:
        if run_as is None:
            return list(command)
        raise ServerStartError(
            f"cannot run {command[0]!r} as {run_as.pw_name}: setpriv (util-linux) is not installed"
        )
    return [setpriv, *prefix, "--", *guard, *command]
