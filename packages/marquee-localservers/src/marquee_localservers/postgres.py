"""A PostgreSQL server process, and finding its binaries (system packages or the pgserver wheel)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import time
from pathlib import Path

import psutil

from marquee_localservers.errors import BackendUnavailable, ServerStartError
from marquee_localservers.process import ServerProcess, netloc, run_quiet
from marquee_localservers.spawning import child_argv
from marquee_localservers.unprivileged import grant_traverse, service_account

_TOOLS = ("initdb", "postgres", "pg_isready", "psql")
_SYSTEM_BINDIRS = "/usr/lib/postgresql/*/bin"
# sun_path holds 108 bytes with the trailing NUL; longer socket paths make postgres fail.
_MAX_SOCKET_PATH = 107


def find_postgres_bindir() -> Path:
    """A directory holding initdb, postgres, pg_isready and psql.

    Preference: `postgres` on PATH (symlinks resolved to the real bin dir), then the
    newest Debian /usr/lib/postgresql/N/bin, then the binaries bundled in the
    `pgserver` wheel, which makes a fresh machine work without system packages.
    """
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    system = sorted(Path("/").glob(_SYSTEM_BINDIRS.lstrip("/")), key=_version_key, reverse=True)
    candidates.extend(system)
    # find_spec rather than import: importing pgserver has side effects (runtime dirs, warnings).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in _TOOLS):
            return bindir
    raise BackendUnavailable(
        "no PostgreSQL binaries found (need initdb, postgres, pg_isready, psql): install the "
        "Debian postgresql package or the pgserver wheel"
    )


def _version_key(bindir: Path) -> int:
    version = bindir.parent.name
    return int(version) if version.isdigit() else 0


class PostgresServer(ServerProcess):
    """A PostgreSQL cluster in `data_dir` (initdb on first start, reused afterwards).

    Trust authentication for the loopback addresses only, fsync on. When we are
    root the server runs as an unprivileged account, since postgres refuses root.
    """

    # Fast shutdown: rolls back open sessions, checkpoints, exits. SIGTERM ("smart")
    # would wait for every client to disconnect, possibly forever.
    stop_signal = signal.SIGINT
    log_name = "postgres.log"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        database: str = "marquee",
        user: str = "marquee",
        bindir: Path | None = None,
    ) -> None:
        super().__init__("postgres", data_dir, port, host)
        self.database = database
        self.user = user
        self.bindir = bindir
        self._account: pwd.struct_passwd | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{netloc(self.host, self.port)}/{self.database}"

    def _tool(self, name: str) -> str:
        if self.bindir is None:
            self.bindir = find_postgres_bindir()
        tool = self.bindir / name
        if not tool.is_file():
            raise BackendUnavailable(f"{name} not found in {self.bindir}")
        return str(tool)

    def _prepare(self, deadline: float) -> None:
        initialized = (self.data_dir / "PG_VERSION").exists()
        if os.geteuid() == 0:
            self._account = self._pick_account(initialized)
            grant_traverse(self.data_dir)
            grant_traverse(Path(self._tool("postgres")))
            os.chown(self.data_dir, self._account.pw_uid, self._account.pw_gid)
        if initialized:
            self._remove_stale_pidfile()
            return
        initdb = [
            self._tool("initdb"),
            "--pgdata", str(self.data_dir),
            "--username", self.user,
            # initdb's pg_hba.conf lists only the local socket, 127.0.0.1/32 and ::1/128.
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]  # fmt: skip
        result = run_quiet(
            child_argv(initdb, death_signal=None, run_as=self._account),
            deadline - time.monotonic(),
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb failed in {self.data_dir}:\n{result.stdout}{result.stderr}"
            )

    def _pick_account(self, initialized: bool) -> pwd.struct_passwd:
        # An existing cluster must keep running as the account that owns its files.
        owner = self.data_dir.stat().st_uid
        if initialized and owner != 0:
            return pwd.getpwuid(owner)
        return service_account()

    def _remove_stale_pidfile(self) -> None:
        # After a SIGKILL the pid recorded in postmaster.pid may since belong to another
        # process, and postgres would then refuse to start.
        pidfile = self.data_dir / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).name() == "postgres":
                    return
            pidfile.unlink()

    def _run_as(self) -> pwd.struct_passwd | None:
        return self._account

    def _command(self) -> list[str]:
        socket_dir = str(self.data_dir)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}.lock") > _MAX_SOCKET_PATH:
            socket_dir = ""  # TCP only; every client here uses the URL anyway
        return [
            self._tool("postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={socket_dir}",
        ]  # fmt: skip

    def _ping(self) -> bool:
        probe = [
            self._tool("pg_isready"),
            "--host", self.host,
            "--port", str(self.port),
            "--username", self.user,
            "--dbname", "postgres",
            "--timeout", "1",
        ]  # fmt: skip
        return run_quiet(probe, 5.0).returncode == 0

    def _after_ready(self, deadline: float) -> None:
        timeout = deadline - time.monotonic()
        exists = self._sql("SELECT 1 FROM pg_database WHERE datname = :'db'", timeout)
        if exists != "1":
            self._sql('CREATE DATABASE :"db"', timeout)

    def _sql(self, sql: str, timeout: float) -> str:
        """Run one statement via psql; `:'db'` and `:"db"` quote the database name safely."""
        psql = [
            self._tool("psql"),
            "--host", self.host,
            "--port", str(self.port),
            "--username", self.user,
            "--dbname", "postgres",
            "--no-psqlrc", "--quiet", "--tuples-only", "--no-align",
            "--set", "ON_ERROR_STOP=1",
            "--set", f"db={self.database}",
        ]  # fmt: skip
        result = run_quiet(psql, timeout, input=sql)
        if result.returncode != 0:
            raise ServerStartError(f"postgres on port {self.port}: {sql!r} failed: {result.stderr}")
        return result.stdout.strip()
