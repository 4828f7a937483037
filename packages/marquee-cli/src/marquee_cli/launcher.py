"""`marquee up`: start the whole suite as child processes and supervise it until told to stop.

Order of life: Redis and PostgreSQL, then every service process, then wait for
all of them to answer health checks SERVING, then publish <data>/endpoints.json
and watch. On SIGINT/SIGTERM the services drain first (they still need their
backends while draining), then the backends stop cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import typer

from marquee_cli import output
from marquee_cli.cluster_secret import load_or_create_secret
from marquee_cli.datadir_lock import DataDirLock
from marquee_cli.endpoints import Endpoints, ProcessEndpoint, endpoints_path, now, write_endpoints
from marquee_cli.health import SERVING, check_health
from marquee_cli.ports import PortPlan, address, plan_ports
from marquee_cli.processes import (
    describe_exit,
    log_tail,
    mark_run,
    python_module_argv,
    spawn,
)
from marquee_cli.suite import (
    SHUTDOWN_GRACE_SECONDS,
    ServiceSpec,
    SuiteContext,
    service_env,
    suite_services,
)
from marquee_localservers import BackendUnavailable, PostgresServer, RedisServer, ServerStartError

# Beyond the services' own grace, before the launcher SIGKILLs what is left.
KILL_MARGIN_SECONDS = 2.0
POLL_SECONDS = 0.2
BACKEND_ROLE = "backend"


@dataclass(frozen=True)
class LaunchOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    base_port: int = 50050
    coordinators: int = 3
    startup_timeout: float = 60.0
    json_output: bool = False


@dataclass
class RunningService:
    spec: ServiceSpec
    grpc: str
    metrics: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def exited(self) -> bool:
        return self.process.poll() is not None


def say(message: str) -> None:
    """Progress and trouble go to stderr, so stdout holds only the table or the JSON."""
    typer.echo(f"marquee up: {message}", err=True)


class Launcher:
    def __init__(self, options: LaunchOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.specs = suite_services(options.coordinators)
        self.ports: PortPlan = plan_ports(
            options.base_port, [(s.name, s.node_id) for s in self.specs], options.host
        )
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.services: list[RunningService] = []
        self.endpoints_file = endpoints_path(self.data_dir)
        self._published = False

    async def run(self) -> int:
        """The process exit code: 0 after a requested stop, 1 if the suite never came up."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with DataDirLock(self.data_dir):
            try:
                return await self._run_until(stop)
            finally:
                await self._shutdown()

    async def _run_until(self, stop: asyncio.Event) -> int:
        try:
            # Blocking, and on the main thread on purpose: the backends' parent-death
            # signal is tied to the thread that spawns them. A stop request waits.
            self._start_backends()
        except (ServerStartError, BackendUnavailable) as exc:
            say(f"a backend did not start: {exc}")
            return 1
        if stop.is_set():
            return 0
        self._spawn_services()
        failures = await self._wait_until_healthy(stop)
        if stop.is_set():
            return 0
        if failures:
            self._report_startup_failures(failures)
            return 1
        self._publish()
        await self._supervise(stop)
        return 0

    def _start_backends(self) -> None:
        timeout = self.options.startup_timeout
        say("starting redis and postgres")
        self.redis = RedisServer(
            self.data_dir / "redis", self.ports.redis, self.options.host, persistent=True
        )
        self.redis.start(timeout)
        self.postgres = PostgresServer(
            self.data_dir / "postgres", self.ports.postgres, self.options.host
        )
        self.postgres.start(timeout)

    def _spawn_services(self) -> None:
        assert self.redis is not None
        assert self.postgres is not None
        context = SuiteContext(
            data_dir=self.data_dir,
            host=self.options.host,
            ports=self.ports,
            redis_url=self.redis.url,
            postgres_url=self.postgres.url,
            cluster_secret=load_or_create_secret(self.data_dir / "coordinator" / "cluster-secret"),
        )
        say(f"starting {len(self.specs)} service processes, logs in {self.data_dir / 'logs'}")
        for spec in self.specs:
            ports = self.ports.services[spec.name]
            log_path = self.data_dir / "logs" / f"{spec.name}.log"
            mark_run(log_path, f"{spec.name} (launcher pid {os.getpid()})")
            process = spawn(python_module_argv(spec.module), service_env(spec, context), log_path)
            self.services.append(
                RunningService(
                    spec=spec,
                    grpc=address(self.options.host, ports.grpc),
                    metrics=address(self.options.host, ports.metrics),
                    log_path=log_path,
                    process=process,
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
            pending = [s for s, status in zip(pending, statuses, strict=True) if status != SERVING]
            if pending and loop.time() > deadline:
                timeout = self.options.startup_timeout
                return [(s, f"not SERVING after {timeout:g}s") for s in pending]
            if pending:
                await _sleep_unless(stop, POLL_SECONDS)
        return []

    def _report_startup_failures(self, failures: list[tuple[RunningService, str]]) -> None:
        for service, why in failures:
            say(f"{service.spec.name} failed to start: {why}; last lines of {service.log_path}:")
            for line in log_tail(service.log_path):
                typer.echo(f"    {line}", err=True)
        say("stopping everything")

    def _endpoints(self) -> Endpoints:
        assert self.redis is not None
        assert self.postgres is not None
        backends = [
            ProcessEndpoint(
                name=server.name, role=BACKEND_ROLE, pid=server.pid or 0, url=server.url
            )
            for server in (self.redis, self.postgres)
        ]
        services = [
            ProcessEndpoint(
                name=s.spec.name,
                role=s.spec.role,
                pid=s.process.pid,
                grpc=s.grpc,
                metrics=s.metrics,
            )
            for s in self.services
        ]
        return Endpoints(launcher_pid=os.getpid(), started_at=now(), processes=backends + services)

    def _publish(self) -> None:
        endpoints = self._endpoints()
        write_endpoints(self.endpoints_file, endpoints)
        self._published = True
        if self.options.json_output:
            typer.echo(output.render_json(endpoints.to_json()))
            return
        typer.echo(f"Marquee is up; data in {self.data_dir}, logs in {self.data_dir / 'logs'}\n")
        typer.echo(output.endpoints_table(endpoints))
        typer.echo("\nTry:")
        typer.echo(output.grpcurl_lines(endpoints))
        typer.echo("\nCtrl-C (or `marquee down`) stops everything.")

    async def _supervise(self, stop: asyncio.Event) -> None:
        """Until asked to stop; a process that dies is reported once, the rest keep running."""
        reported: set[str] = set()
        while not stop.is_set():
            for service in self.services:
                if service.exited() and service.spec.name not in reported:
                    reported.add(service.spec.name)
                    why = describe_exit(service.process.returncode)
                    say(f"!!! {service.spec.name} (pid {service.process.pid}) {why} !!!")
                    for line in log_tail(service.log_path, lines=10):
                        typer.echo(f"    {line}", err=True)
            for server in (self.redis, self.postgres):
                if server is not None and not server.is_running() and server.name not in reported:
                    reported.add(server.name)
                    say(f"!!! {server.name} stopped unexpectedly; see {server.log_path} !!!")
            await _sleep_unless(stop, POLL_SECONDS)

    async def _shutdown(self) -> None:
        """Services first, in parallel, then the backends they were using."""
        if self.services:
            say("stopping services")
            await self._stop_services()
        backends = [s for s in (self.postgres, self.redis) if s is not None]
        if backends:
            say("stopping postgres and redis")
            # Stopping spawns nothing, so worker threads are safe here.
            await asyncio.gather(*(asyncio.to_thread(server.stop) for server in backends))
        if self._published:
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


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def launch(options: LaunchOptions) -> int:
    return asyncio.run(Launcher(options).run())
