"""A Redis server process, and finding (or apt-installing) its binary."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

from marquee_localservers.apt import find_or_install
from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.process import ServerProcess, netloc


def find_redis_server() -> str:
    """Path of `redis-server`: from PATH, else installed with apt when we are root.

    Set MARQUEE_NO_APT=1 to forbid the install. Debian's package may also start a
    system Redis on 6379; we leave it alone, our servers always take free ports.
    """
    return find_or_install("redis-server", "redis-server", "/usr/bin/redis-server")


class RedisServer(ServerProcess):
    """redis-server on a free port with its files in `data_dir`.

    persistent=True keeps every write in an append-only file that a SIGTERM
    shutdown flushes, so stop()/start() loses nothing; persistent=False keeps
    nothing on disk.
    """

    log_name = "redis.log"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        persistent: bool = True,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        super().__init__("redis", data_dir, port, host)
        self.persistent = persistent
        self.extra_args = tuple(extra_args)
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://{netloc(self.host, self.port)}/0"

    def _command(self) -> list[str]:
        binary = self.binary or find_redis_server()
        if not os.access(binary, os.X_OK):
            raise BackendUnavailable(f"redis-server binary {binary!r} is missing or not executable")
        persistence = ["--appendonly", "yes"] if self.persistent else ["--appendonly", "no"]
        return [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to our log file
            "--save", "",  # no RDB snapshots: the AOF alone carries persistence
            *persistence,
            *self.extra_args,
        ]  # fmt: skip

    def _ping(self) -> bool:
        # A raw RESP PING: no client library needed, and "-LOADING" while the AOF
        # replays correctly counts as not ready yet.
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
