"""A Redis server process, and finding (or apt-installing) its binary."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from marquee_localservers.errors import BackendUnavailable
from marquee_localservers.process import ServerProcess, netloc, run_quiet

# One apt run at a time across processes: parallel sessions would otherwise trip
# over dpkg's lock or install twice.
_APT_LOCK = "marquee-apt.lock"
_APT_TIMEOUT = 600.0


def find_redis_server() -> str:
    """Path of `redis-server`: from PATH, else installed with apt when we are root.

    Set MARQUEE_NO_APT=1 to forbid the install. Debian's package may also start a
    system Redis on 6379; we leave it alone, our servers always take free ports.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    if os.environ.get("MARQUEE_NO_APT"):
        raise BackendUnavailable("redis-server is not on PATH and MARQUEE_NO_APT is set")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BackendUnavailable(
            "redis-server is not on PATH; install it (Debian: apt-get install redis-server)"
        )
    lock_dir = Path("/var/lock") if Path("/var/lock").is_dir() else Path(tempfile.gettempdir())
    # O_NOFOLLOW, no truncation: the lock dir is world-writable and we are root.
    lock = os.open(lock_dir / _APT_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return shutil.which("redis-server") or _apt_install("redis-server", "/usr/bin/redis-server")
    finally:
        os.close(lock)


def _apt_install(package: str, binary: str) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=120", package]
    result = run_quiet(install, _APT_TIMEOUT, env=env)
    if result.returncode != 0:
        # Most often the package lists were never fetched on a fresh machine.
        run_quiet(["apt-get", "update", "-qq"], _APT_TIMEOUT, env=env)
        result = run_quiet(install, _APT_TIMEOUT, env=env)
    if result.returncode != 0 or not Path(binary).exists():
        detail = result.stderr.strip()[-500:]
        raise BackendUnavailable(f"apt-get install {package} failed: {detail}")
    return binary


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
