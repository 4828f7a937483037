"""`marquee up`: start the whole suite as child processes and supervise it until told to stop.

Order of life: the coordinator nodes (they need no backend) and, beside them,
Redis, PostgreSQL and, with `--storage s3`, SeaweedFS, all spawned from the main
thread and awaited together (backend_start); each other service is spawned as
soon as the backends it needs answer. Then wait for all of them to answer
health checks SERVING, publish <data>/endpoints.json and watch. The local
OIDC provider (dev profile) starts once all are SERVING, so it never holds
them up: it joins the suite when it answers, or the suite runs without OIDC
login.
Watching: a process that dies is restarted with backoff on its own ports and
data (supervision.RestartPolicy), and the suite stops with exit code 1 when one
keeps dying (the OIDC provider is dropped instead). On SIGINT/SIGTERM the
services drain first (they still need their backends while draining), then
the backends stop cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from marquee_cli import local_oidc, output
from marquee_cli.backend_start import prepare_server, spawn_prepared, spawn_server, wait_ready
from marquee_cli.cluster_secret import load_or_create_secret
from marquee_cli.datadir_lock import DataDirLock
from marquee_cli.endpoints import Endpoints, ProcessEndpoint, endpoints_path, now, write_endpoints
from marquee_cli.health import SERVING, check_health
from marquee_cli.port_record import PortsUnusable, plan_for_data_dir
from marquee_cli.ports import PortPlan, address, console_port
from marquee_cli.processes import (
    describe_exit,
    log_tail,
    mark_run,
    python_module_argv,
    spawn,
)
from marquee_cli.startup_diagnosis import coordinator_diagnosis
from marquee_cli.suite import (
    SHUTDOWN_GRACE_SECONDS,
    S3Target,
    ServiceSpec,
    SuiteContext,
    service_env,
    service_needs,
    suite_services,
)
from marquee_cli.supervision import RestartPolicy, Restarts
from marquee_localservers import (
    BackendUnavailable,
    OidcProviderServer,
    PostgresServer,
    RedisServer,
    SeaweedServer,
    ServerProcess,
    ServerStartError,
)
from marquee_localservers.oidc_provider import oidc_provider_modules

# Beyond the services' own grace, before the launcher SIGKILLs what is left.
KILL_MARGIN_SECONDS = 2.0
POLL_SECONDS = 0.2
BACKEND_ROLE = "backend"
BACKEND_ORDER = ("redis", "postgres", "seaweedfs", "oidc-provider")


@dataclass(frozen=True)
class LaunchOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    base_port: int = 50050
    coordinators: int = 3
    startup_timeout: float = 60.0
    json_output: bool = False
    # None: the defaults, overridden by MARQUEE_UP_* variables (RestartPolicy.from_env).
    restart_policy: RestartPolicy | None = None
    # Where media keeps objects: "local" disk under the data dir, or "s3" on a SeaweedFS.
    storage: str = "local"


@dataclass
class RunningService:
    spec: ServiceSpec
    grpc: str
    metrics: str
    raft: str | None
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    restarts: Restarts

    def exited(self) -> bool:
        return self.process.poll() is not None


@dataclass
class Backend:
    server: ServerProcess
    restarts: Restarts = field(default_factory=lambda: Restarts(started_at=0.0))
    # One the suite runs without (the OIDC provider): given up on, it is dropped.
    optional: bool = False

    @property
    def name(self) -> str:
        return self.server.name


def say(message: str) -> None:
    """Progress and trouble go to stderr, so stdout holds only the table or the JSON."""
    typer.echo(f"marquee up: {message}", err=True)


class Launcher:
    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.specs = suite_services(options.coordinators)
        # Planned under the data dir's lock, from the ports it recorded (port_record).
        self.ports: PortPlan | None = None
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.seaweed: SeaweedServer | None = None
        self.oidc: OidcProviderServer | None = None
        # Backends that answered once: supervised, and listed in endpoints.json.
        self.backends: list[Backend] = []
        # Every server spawned, answering or not: what shutdown stops.
        self._spawned: list[ServerProcess] = []
        self._oidc_task: asyncio.Task[None] | None = None
        self._oidc_port_held: socket.socket | None = None
        # The backends' starts: cancelled by a shutdown that comes first, so
        # none spawns its server after the shutdown stopped the others.
        self._starts: set[asyncio.Future[ServerProcess]] = set()
        # Monotonic time the launcher began spawning, for the start-up figure.
        self._spawn_started = 0.0
        self.services: list[RunningService] = []
        self.endpoints_file = endpoints_path(self.data_dir)
        self._published_at: datetime | None = None
        # Auth's dev console, chosen when the services are spawned.
        self.console_port = -1

    async def run(self) -> int:
        """The process exit code: 0 after a requested stop, 1 if the suite never came up
        or a process kept dying."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with DataDirLock(self.data_dir):
            try:
                policy = self.options.restart_policy or RestartPolicy.from_env()
                self.ports = plan_for_data_dir(
                    self.data_dir,
                    self.options.base_port,
                    [(s.name, s.node_id) for s in self.specs],
                    self.options.host,
                    warn=say,
                )
            except (PortsUnusable, ValueError) as exc:
                say(f"not starting: {exc}")
                return 1
            try:
                return await self._run_until(stop, policy)
            finally:
                await self._shutdown()

    async def _run_until(self, stop: asyncio.Event, policy: RestartPolicy) -> int:
        self._spawn_started = asyncio.get_running_loop().time()
        try:
            context = self._context()
            await self._start(context, stop)
        except (ServerStartError, BackendUnavailable) as exc:
            say(f"a backend did not start: {exc}")
            return 1
        if stop.is_set():
            return 0
        failures = await self._wait_until_healthy(stop)
        if stop.is_set():
            return 0
        if failures:
            self._report_startup_failures(failures)
            return 1
        took = asyncio.get_running_loop().time() - self._spawn_started
        say(f"all {len(self.services)} service processes SERVING {took:.2f}s after the first spawn")
        if self.oidc is not None:
            # Only now: no one needs it before a person opens the console, and
            # node's start-up would take CPU from the services' (2 cores here).
            self._oidc_task = asyncio.create_task(self._start_oidc(self.oidc))
        self._publish()
        return await self._supervise(stop, policy)

    def _context(self) -> SuiteContext:
        """The servers (not started) and what every service is told about them.

        Their addresses follow from the port plan, so services may be spawned
        before the backends answer.
        """
        assert self.ports is not None
        host = self.options.host
        self.redis = RedisServer(self.data_dir / "redis", self.ports.redis, host, persistent=True)
        self.postgres = PostgresServer(self.data_dir / "postgres", self.ports.postgres, host)
        self.console_port = console_port(self.options.base_port, self.options.host)
        s3 = None
        if self.options.storage == "s3":
            assert self.ports.s3 is not None
            seaweed_dir = self.data_dir / "seaweedfs"
            self.seaweed = SeaweedServer(
                seaweed_dir,
                self.ports.s3,
                host,
                access_key="marquee",
                # Generated once per data dir: the S3 gateway checks every signature.
                secret_key=load_or_create_secret(seaweed_dir / "secret-key"),
            )
            s3 = S3Target(
                endpoint=self.seaweed.url,
                access_key=self.seaweed.access_key,
                secret_key=self.seaweed.secret_key,
                region=self.seaweed.region,
            )
        oidc_providers = None
        off = local_oidc.wanted()
        if off is None:
            assert self.ports.oidc is not None
            try:
                self.oidc = local_oidc.provider_server(
                    self.data_dir / "oidc-provider", self.ports.oidc, self.console_port
                )
                oidc_providers = local_oidc.auth_providers(self.oidc)
                self._oidc_port_held = local_oidc.hold_port(self.ports.oidc)
            except BackendUnavailable as exc:
                off = str(exc)
        if off is not None:
            say(f"OIDC login is off: {off}")
        return SuiteContext(
            data_dir=self.data_dir,
            host=host,
            ports=self.ports,
            redis_url=self.redis.url,
            postgres_url=self.postgres.url,
            cluster_secret=load_or_create_secret(self.data_dir / "coordinator" / "cluster-secret"),
            console_port=self.console_port,
            s3=s3,
            oidc_providers=oidc_providers,
        )

    async def _start(self, context: SuiteContext, stop: asyncio.Event) -> None:
        """Spawn every service and required backend, each service once its backends answer.

        Spawning happens on the main thread (the loop's): the children's
        parent-death signal is tied to it. Only preparations (initdb) and the
        waits for readiness run in worker threads, side by side. Raises as a
        backend's start does.
        """
        servers: list[ServerProcess] = [s for s in (self.redis, self.postgres) if s is not None]
        if self.seaweed is not None:
            servers.append(self.seaweed)
        say(f"starting {', '.join(s.name for s in servers)}")
        starts = {asyncio.ensure_future(self._bring_up(server)) for server in servers}
        self._starts = set(starts)
        for start in starts:
            # Retrieved even when no one awaits it any more (another one failed first).
            start.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Lets the backends' preparations begin before the nodes' spawns.
        await asyncio.sleep(0)
        needs = {spec.name: service_needs(spec, self.options.storage) for spec in self.specs}
        say(f"starting {len(self.specs)} service processes, logs in {self.data_dir / 'logs'}")
        ready: set[str] = set()
        waiting = self._spawn_ready(context, list(self.specs), needs, ready)
        stopping: asyncio.Future[ServerProcess] = asyncio.ensure_future(_stopped(stop))
        try:
            while starts and not stop.is_set():
                done, _ = await asyncio.wait(
                    [*starts, stopping], return_when=asyncio.FIRST_COMPLETED
                )
                for finished in done - {stopping}:
                    starts.discard(finished)
                    server = finished.result()
                    self.backends.append(
                        Backend(server, Restarts(started_at=asyncio.get_running_loop().time()))
                    )
                    ready.add(server.name)
                waiting = self._spawn_ready(context, waiting, needs, ready)
        finally:
            stopping.cancel()
            # A failed start leaves the others running: they end once shutdown
            # stops their servers, and asyncio.run waits for their threads.

    async def _bring_up(self, server: ServerProcess) -> ServerProcess:
        """Prepare (worker thread), spawn (here, on the main thread), await readiness."""
        timeout = self.options.startup_timeout
        deadline = await asyncio.to_thread(prepare_server, server, timeout)
        spawned = spawn_prepared(server, deadline, timeout)
        self._spawned.append(server)
        await asyncio.to_thread(wait_ready, spawned)
        return server

    def _spawn_ready(
        self,
        context: SuiteContext,
        waiting: list[ServiceSpec],
        needs: dict[str, frozenset[str]],
        ready: set[str],
    ) -> list[ServiceSpec]:
        """Spawn those of `waiting` whose backends all answer; the rest still wait."""
        now_ready = [spec for spec in waiting if needs[spec.name] <= ready]
        self._spawn_services(context, now_ready)
        return [spec for spec in waiting if spec not in now_ready]

    async def _start_oidc(self, server: OidcProviderServer) -> None:
        """Start the optional provider beside the suite; say so in one line if it cannot.

        Runs as a task on the main thread's loop, so it spawns from the main thread.
        """
        try:
            # A first run on a machine installs the npm package: in a worker
            # thread, so nothing else waits for it.
            await asyncio.to_thread(oidc_provider_modules)
            local_oidc.release(self._oidc_port_held)
            spawned = spawn_server(server, self.options.startup_timeout)
            self._spawned.append(server)
            await asyncio.to_thread(wait_ready, spawned)
        except (BackendUnavailable, ServerStartError) as exc:
            say(f"OIDC login is off: {str(exc).splitlines()[0]}")
            return
        started = asyncio.get_running_loop().time()
        self.backends.append(Backend(server, Restarts(started_at=started), optional=True))
        if self._published_at is not None:
            self._republish()

    def _spawn_services(self, context: SuiteContext, specs: list[ServiceSpec]) -> None:
        assert self.ports is not None
        started = asyncio.get_running_loop().time()
        for spec in specs:
            ports = self.ports.services[spec.name]
            log_path = self.data_dir / "logs" / f"{spec.name}.log"
            mark_run(log_path, f"{spec.name} (launcher pid {os.getpid()})")
            env = service_env(spec, context)
            self.services.append(
                RunningService(
                    spec=spec,
                    grpc=address(self.options.host, ports.grpc),
                    metrics=address(self.options.host, ports.metrics),
                    raft=None if ports.raft is None else f"{self.options.host}:{ports.raft}",
                    log_path=log_path,
                    env=env,
                    process=spawn(python_module_argv(spec.module), env, log_path),
                    restarts=Restarts(started_at=started),
                )
            )

    async def _wait_until_healthy(self, stop: asyncio.Event) -> list[tuple[RunningService, str]]:
        """Services that exited or never became SERVING, with why; empty when all are."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.startup_timeout
        pending = list(self.services)
        while pending and not stop.is_set():
            exited = [s for s in pending if s.exited()]
            if exited:
                return [(s, describe_exit(s.process.returncode)) for s in exited]
            statuses = await asyncio.gather(*(check_health(s.grpc, deadline=1.0) for s in pending))
            last = {s.spec.name: status for s, status in zip(pending, statuses, strict=True)}
            pending = [s for s in pending if last[s.spec.name] != SERVING]
            if pending and loop.time() > deadline:
                return [(s, await self._why_not_serving(s, last[s.spec.name])) for s in pending]
            if pending:
                await _sleep_unless(stop, POLL_SECONDS)
        return []

    async def _why_not_serving(self, service: RunningService, health: str) -> str:
        """What the start-up waited for and what it got, e.g. a coordinator's missing leader."""
        why = f"not SERVING after {self.options.startup_timeout:g}s (health: {health})"
        if service.spec.node_id is None:
            return why
        peers = service.env.get(service.spec.env_prefix + "PEERS", "")
        given = [p for p in peers.split(",") if p]
        return f"{why}: {await coordinator_diagnosis(service.grpc, given)}"

    def _report_startup_failures(self, failures: list[tuple[RunningService, str]]) -> None:
        for service, why in failures:
            say(f"{service.spec.name} failed to start: {why}; last lines of {service.log_path}:")
            for line in log_tail(service.log_path):
                typer.echo(f"    {line}", err=True)
        say("stopping everything")

    def _endpoints(self) -> Endpoints:
        assert self._published_at is not None
        backends = [
            ProcessEndpoint(
                name=b.name,
                role=BACKEND_ROLE,
                pid=b.server.pid or 0,
                url=b.server.url,
                restarts=b.restarts.count,
                last_exit=b.restarts.last_exit,
                last_restart_at=b.restarts.last_restart_at,
            )
            # Listed in a fixed order, not in the order they came up.
            for b in sorted(self.backends, key=lambda b: BACKEND_ORDER.index(b.name))
        ]
        services = [
            ProcessEndpoint(
                name=s.spec.name,
                role=s.spec.role,
                pid=s.process.pid,
                grpc=s.grpc,
                metrics=s.metrics,
                raft=s.raft,
                restarts=s.restarts.count,
                last_exit=s.restarts.last_exit,
                last_restart_at=s.restarts.last_restart_at,
            )
            # In suite order, whatever order their backends let them start in.
            for s in sorted(self.services, key=lambda s: self.specs.index(s.spec))
        ]
        return Endpoints(
            launcher_pid=os.getpid(),
            started_at=self._published_at,
            processes=backends + services,
        )

    def _publish(self) -> None:
        self._published_at = now()
        endpoints = self._endpoints()
        write_endpoints(self.endpoints_file, endpoints)
        if self.options.json_output:
            typer.echo(output.render_json(endpoints.to_json()))
            return
        typer.echo(f"Marquee is up; data in {self.data_dir}, logs in {self.data_dir / 'logs'}\n")
        typer.echo(output.endpoints_table(endpoints))
        typer.echo("\nTry:")
        typer.echo(output.grpcurl_lines(endpoints))
        if self.console_port >= 0:
            typer.echo(f"\nAuth's dev console: http://localhost:{self.console_port}/")
            if self.oidc is not None:
                typer.echo(
                    f"  sign in with the local OIDC provider ({self.oidc.url}, "
                    f'provider "{local_oidc.PROVIDER_NAME}", any name and password)'
                )
        typer.echo("\nCtrl-C (or `marquee down`) stops everything.")

    def _republish(self) -> None:
        """The endpoints file again, with new pids and restart counts (status reads it)."""
        write_endpoints(self.endpoints_file, self._endpoints())

    async def _supervise(self, stop: asyncio.Event, policy: RestartPolicy) -> int:
        """Until asked to stop (0), restarting what dies; 1 once a process keeps dying.

        Runs on the main thread (asyncio.run's), which therefore spawns every
        restarted child too: their parent-death signal stays tied to a thread
        that lives as long as the launcher.
        """
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            for service in self.services:
                if service.restarts.due is None and service.exited():
                    why = describe_exit(service.process.returncode)
                    # Helpers it started (ffmpeg...) are in its group: they go with it.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(service.process.pid, signal.SIGKILL)
                    if not self._note_exit(
                        f"{service.spec.name} (pid {service.process.pid})",
                        why,
                        service.restarts,
                        policy,
                    ):
                        return 1
                    for line in log_tail(service.log_path, lines=10):
                        typer.echo(f"    {line}", err=True)
                elif service.restarts.is_due(loop.time()):
                    self._respawn(service)
            for backend in list(self.backends):
                if backend.restarts.due is None and not backend.server.is_running():
                    why = _backend_exit(backend.server)
                    message = f"{backend.name} (see {backend.server.log_path})"
                    if not self._note_exit(message, why, backend.restarts, policy, backend):
                        return 1
                elif backend.restarts.is_due(loop.time()) and not self._restart_backend(
                    backend, policy
                ):
                    return 1
            await _sleep_unless(stop, POLL_SECONDS)
        return 0

    def _note_exit(
        self,
        what: str,
        why: str,
        restarts: Restarts,
        policy: RestartPolicy,
        backend: Backend | None = None,
    ) -> bool:
        """Record an unexpected exit and say what happens next; False: stop the suite."""
        at = asyncio.get_running_loop().time()
        again = restarts.exited(why, at, policy)
        if not again and backend is not None and backend.optional:
            self.backends.remove(backend)
            self._spawned.remove(backend.server)
            self._republish()
            say(f"OIDC login is off: {what} {why}; gave up after {restarts.failed} restarts")
            return True
        if not again:
            self._republish()
            say(
                f"!!! {what} {why}; giving up after {restarts.failed} failed restarts "
                f"in a row (each died within {policy.stable_after:g}s); stopping the suite !!!"
            )
            return False
        assert restarts.due is not None
        say(f"!!! {what} {why}; restarting it in {restarts.due - at:.1f}s !!!")
        self._republish()
        return True

    def _respawn(self, service: RunningService) -> None:
        """Same command, environment (ports, data dir) and log, from the main thread."""
        service.restarts.restarted(asyncio.get_running_loop().time(), now())
        count = service.restarts.count
        mark_run(
            service.log_path, f"{service.spec.name} restart {count} (launcher pid {os.getpid()})"
        )
        service.process = spawn(
            python_module_argv(service.spec.module), service.env, service.log_path
        )
        say(f"restarted {service.spec.name} (pid {service.process.pid}, restart {count})")
        self._republish()

    def _restart_backend(self, backend: Backend, policy: RestartPolicy) -> bool:
        """Start it again on its port and data dir; blocks the loop (and so the main thread
        spawns it) for up to the start-up timeout. False: stop the suite."""
        loop = asyncio.get_running_loop()
        backend.restarts.restarted(loop.time(), now())
        try:
            backend.server.stop()  # forgets the dead process
            backend.server.start(self.options.startup_timeout)
        except (ServerStartError, BackendUnavailable) as exc:
            why = f"did not start again: {str(exc).splitlines()[0]}"
            return self._note_exit(backend.name, why, backend.restarts, policy, backend)
        say(
            f"restarted {backend.name} (pid {backend.server.pid}, restart {backend.restarts.count})"
        )
        self._republish()
        return True

    async def _shutdown(self) -> None:
        """Services first, in parallel, then the backends they were using."""
        if self.services:
            say("stopping services")
            await self._stop_services()
        pending = [t for t in (*self._starts, self._oidc_task) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        # Each ends at its next await: a spawn already made is in _spawned.
        await asyncio.gather(*pending, return_exceptions=True)
        local_oidc.release(self._oidc_port_held)
        backends = self._spawned
        if backends:
            say(f"stopping {', '.join(s.name for s in backends)}")
            # Stopping spawns nothing, so worker threads are safe here.
            await asyncio.gather(*(asyncio.to_thread(server.stop) for server in backends))
        if self._published_at is not None:
            self.endpoints_file.unlink(missing_ok=True)

    async def _stop_services(self) -> None:
        signalled = [s for s in self.services if not s.exited()]
        for service in signalled:
            service.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE_SECONDS + KILL_MARGIN_SECONDS
        # Polling is the simplest portable way to await several children's exits.
        while any(not s.exited() for s in self.services) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for service in self.services:
            if not service.exited():
                say(f"{service.spec.name} did not stop in time; killing it")
                # Its whole process group: a service's own helpers (ffmpeg...) go too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
        for service in signalled:
            # Killed by our SIGTERM means it was still starting: nothing to drain.
            if service.process.returncode not in (0, -signal.SIGTERM):
                why = describe_exit(service.process.returncode)
                say(f"{service.spec.name} {why} while stopping; see {service.log_path}")


def _backend_exit(server: ServerProcess) -> str:
    # ServerProcess keeps its Popen private and has no returncode property;
    # the dead process is still there until stop() forgets it.
    process = server._proc
    code = process.poll() if process is not None else None
    return "stopped unexpectedly" if code is None else describe_exit(code)


async def _stopped(stop: asyncio.Event) -> Any:
    await stop.wait()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def launch(options: LaunchOptions) -> int:
    return asyncio.run(Launcher(options).run())
