"""Start several local servers at once: spawn each from the main thread, await them together.

`ServerProcess.start()` spawns and then blocks until the server answers, so
starting Redis, PostgreSQL and SeaweedFS with it costs the sum of their
start-up times. Running `start()` in worker threads would cost only the
longest, but a child spawned from a worker thread gets no parent-death signal
(marquee_localservers.spawning): a launcher killed with -9 would leave it
running. So the start is split in three: `prepare_server` (initdb...) and
`wait_ready` (probes and waits) may run in worker threads beside the others,
and between them `spawn_prepared` spawns the server on the main thread.
Together they do what `ServerProcess.start()` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from marquee_localservers import ServerStartError
from marquee_localservers.process import ServerProcess

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Spawned:
    server: ServerProcess
    deadline: float
    timeout: float
    # Where this run's lines begin in the server's log (for a failure's tail).
    log_offset: int


def prepare_server(server: ServerProcess, timeout: float) -> float:
    """The server's preparation (initdb on a new PostgreSQL...); any thread. Its deadline.

    The helpers it runs are short-lived and asked for no death signal, so a
    worker thread may run them while the main thread spawns other children.
    """
    deadline = time.monotonic() + timeout
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server._prepare(deadline)
    return deadline


def spawn_prepared(server: ServerProcess, deadline: float, timeout: float) -> Spawned:
    """Spawn a prepared server without waiting for it; call from the main thread."""
    with server.log_path.open("ab") as log:
        offset = log.tell()
        server._proc = server._spawn(log)
    return Spawned(server, deadline, timeout, offset)


def spawn_server(server: ServerProcess, timeout: float) -> Spawned:
    """Prepare and spawn `server` without waiting for it; call from the main thread.

    Raises ServerStartError or BackendUnavailable as `start()` would.
    """
    return spawn_prepared(server, prepare_server(server, timeout), timeout)


def wait_ready(spawned: Spawned) -> None:
    """Block until the spawned server answers (and its after-start step ran); any thread.

    On failure the server is stopped and ServerStartError carries its log tail.
    """
    server = spawned.server
    process = server._proc
    assert process is not None, "spawn_server first"
    while not (server._listening() and server._ping()):
        code = process.poll()
        if code is not None:
            server._forget()
            raise ServerStartError(server._failure(f"exited with code {code}", spawned.log_offset))
        if time.monotonic() > spawned.deadline:
            server.kill()
            raise ServerStartError(
                server._failure(f"did not answer within {spawned.timeout:g}s", spawned.log_offset)
            )
        time.sleep(POLL_SECONDS)
    try:
        server._after_ready(spawned.deadline)
    except BaseException:
        server.stop()
        raise
