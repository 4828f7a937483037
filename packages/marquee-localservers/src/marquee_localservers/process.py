"""The common life cycle of a locally spawned server process: spawn, probe, stop, kill."""

from __future__ import annotations

import abc
import atexit
import collections
import contextlib
import functools
import pwd
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Self

import psutil

from marquee_localservers.errors import ServerStartError
from marquee_localservers.spawning import child_argv

_LOG_TAIL_LINES = 30

# Servers still running when the interpreter exits normally are stopped cleanly;
# the death signal (spawning.child_argv) only covers the abrupt cases.
_running: set[ServerProcess] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on `host`, picked by the kernel from the ephemeral range."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Below the kernel's ephemeral range, from here up (see quiet_port).
_QUIET_PORTS_FROM = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports quiet_port handed out lately, never handed out again while remembered:
# a caller binds them later, so the bind test alone would not see them taken.
_handed_out: collections.deque[int] = collections.deque(maxlen=4096)


@functools.cache
def _first_ephemeral(range_file: Path) -> int:
    """The kernel's first ephemeral port, read once per file (a plan picks dozens)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def quiet_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on `host`, from below the kernel's ephemeral range.

    For a server that binds it seconds after the pick: SeaweedFS binds its S3
    gateway's ports last, after its master, volume server and filer have opened
    connections to each other. A port from the ephemeral range (free_port) can
    meanwhile become the source port of any outgoing connection on the machine,
    and the bind then fails ("address already in use", seen in CI). Outgoing
    connections never take a port below that range. The pick is random, so a
    port this process handed out lately is not handed out again.
    """
    span = _first_ephemeral(_EPHEMERAL_RANGE) - _QUIET_PORTS_FROM
    if span < 1_000:
        return free_port(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        port = _QUIET_PORTS_FROM + secrets.randbelow(span)
        if port in _handed_out:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # taken, or in TIME_WAIT: try another
        _handed_out.append(port)
        return port
    return free_port(host)


def quiet_ports(count: int, host: str = "127.0.0.1", *, besides: Sequence[int] = ()) -> list[int]:
    """`count` distinct quiet ports, none of them in `besides`: quiet_port picks at random."""
    ports: list[int] = []
    while len(ports) < count:
        port = quiet_port(host)
        if port not in ports and port not in besides:
            ports.append(port)
    return ports


def netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ServerProcess(abc.ABC):
    """A server binary run in the foreground as our child, logging to a file in `data_dir`."""

    # Signal for a clean, data-preserving shutdown; also sent if our process dies.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    log_name: ClassVar[str]

    def __init__(self, name: str, data_dir: Path, port: int | None, host: str) -> None:
        self.name = name
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    @abc.abstractmethod
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abc.abstractmethod
    def _ping(self) -> bool:
        """True once the server answers requests."""

    def _prepare(self, deadline: float) -> None:  # noqa: B027 (optional hook)
        """Hook run before spawning (e.g. initdb)."""

    def _after_ready(self, deadline: float) -> None:  # noqa: B027 (optional hook)
        """Hook run once the server answers (e.g. create the database)."""

    def _spawn_options(self) -> dict[str, Any]:
        """Extra subprocess.Popen keyword arguments (e.g. env=).

        Never preexec_fn, user or group: they make CPython fork through the
        at-fork handlers (see marquee_localservers.spawning); use _run_as.
        """
        return {}

    def _run_as(self) -> pwd.struct_passwd | None:
        """The account to run the server as (e.g. to drop root), or None for our own."""
        return None

    def _listening(self) -> bool:
        # Without this, another process already on the port would answer our probe
        # while our server is failing to bind.
        assert self._proc is not None
        try:
            sockets = psutil.Process(self._proc.pid).net_connections(kind="inet")
        except psutil.Error:
            return False
        return any(
            s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == self.port
            for s in sockets
        )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the server and wait until it answers; ServerStartError with its log tail if not."""
        if self.is_running():
            return
        deadline = time.monotonic() + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare(deadline)
        with self.log_path.open("ab") as log:
            log_offset = log.tell()
            self._proc = self._spawn(log)
        _running.add(self)
        while not (self._listening() and self._ping()):
            code = self._proc.poll()
            if code is not None:
                self._forget()
                raise ServerStartError(self._failure(f"exited with code {code}", log_offset))
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    self._failure(f"did not answer within {timeout}s", log_offset)
                )
            time.sleep(0.05)
        try:
            self._after_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        command = child_argv(self._command(), death_signal=self.stop_signal, run_as=self._run_as())
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Own session: a Ctrl-C meant for the launcher must not reach the server
                # before the launcher has stopped the services that use it.
                start_new_session=True,
                **self._spawn_options(),
            )
        except OSError as exc:
            raise ServerStartError(f"{self.name}: cannot run {command[0]!r}: {exc}") from exc

    def _failure(self, what: str, log_offset: int) -> str:
        tail = self.log_tail(log_offset)
        return f"{self.name} on port {self.port} {what}; log {self.log_path}:\n{tail}"

    def log_tail(self, offset: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log written after byte `offset`."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def stop(self, timeout: float = 15.0) -> None:
        """Clean shutdown via `stop_signal`; SIGKILL only if it takes longer than `timeout`."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(self.stop_signal)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server and any children it forked (fault tests); no process is left."""
        if self._proc is None:
            return
        try:
            root = psutil.Process(self._proc.pid)
            victims = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            victims = []
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.kill()
        self._proc.wait()
        psutil.wait_procs(victims, timeout=5)
        self._forget()

    def restart(self, timeout: float = 30.0) -> None:
        """Stop cleanly and start again on the same port."""
        self.stop()
        self.start(timeout)

    def _forget(self) -> None:
        if self._proc is not None:
            self._proc.wait()
        self._proc = None
        _running.discard(self)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid} dir={self.data_dir}>"


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


def run_quiet(
    command: Sequence[str], timeout: float, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run a helper command capturing its output (for error messages)."""
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        timeout=max(timeout, 1.0),
        check=False,
        **options,
    )
