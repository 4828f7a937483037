"""The launcher's failure path, with real Redis and PostgreSQL but services that cannot start."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from marquee_cli import launcher
from marquee_cli.launcher import Launcher, LaunchOptions
from marquee_cli.port_record import plan_for_data_dir
from marquee_localservers import PostgresServer, server_data_dir

FAILING_SERVICE = "import sys; print('invalid setting MARQUEE_X_PORT: boom'); sys.exit(3)"


def test_a_service_that_exits_stops_everything_and_shows_its_log(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with server_data_dir() as data_dir:
        _check_failing_start(data_dir, monkeypatch, capsys)


def _check_failing_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        launcher, "python_module_argv", lambda module: [sys.executable, "-c", FAILING_SERVICE]
    )
    suite = Launcher(LaunchOptions(data_dir=tmp_path, base_port=0, coordinators=1))

    assert asyncio.run(suite.run()) == 1

    stderr = capsys.readouterr().err
    assert "failed to start: exited with code 3" in stderr
    assert "invalid setting MARQUEE_X_PORT: boom" in stderr
    assert all(service.exited() for service in suite.services)
    assert suite.redis is not None
    assert not suite.redis.is_running()
    assert suite.postgres is not None
    assert not suite.postgres.is_running()
    assert not (tmp_path / "endpoints.json").exists()


def test_a_start_that_would_move_a_formed_cluster_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = Launcher(LaunchOptions(data_dir=tmp_path, base_port=0, coordinators=1))
    first.ports = plan_for_data_dir(
        tmp_path, 0, [(s.name, s.node_id) for s in first.specs], "127.0.0.1", warn=print
    )
    # Node 1 has run: its journal is where the launcher's settings put it.
    journal = tmp_path / "coordinator" / "node-1" / "node-1" / "raft.journal"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b"x")

    moved = Launcher(LaunchOptions(data_dir=tmp_path, base_port=20050, coordinators=1))
    assert asyncio.run(moved.run()) == 1

    stderr = capsys.readouterr().err
    assert "not starting: the coordinator cluster in" in stderr
    assert "would never elect a leader" in stderr
    assert moved.redis is None
    assert not (tmp_path / "redis").exists()


class _PostgresThatExits(PostgresServer):
    """A PostgreSQL whose server process exits at once (its preparation is real)."""

    def _command(self) -> list[str]:
        # A system shell: as root, postgres runs as an account that may not reach our venv.
        return ["/bin/sh", "-c", "echo no postgres today; exit 4"]


def test_services_wait_for_their_backends_and_nodes_do_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with server_data_dir() as data_dir:
        monkeypatch.setattr(launcher, "PostgresServer", _PostgresThatExits)
        # Services that would run long enough to be seen, had they been spawned.
        monkeypatch.setattr(
            launcher,
            "python_module_argv",
            lambda module: [sys.executable, "-c", "import time; time.sleep(60)"],
        )
        monkeypatch.setenv("MARQUEE_UP_OIDC", "0")
        suite = Launcher(LaunchOptions(data_dir=data_dir, base_port=0, coordinators=2))

        assert asyncio.run(suite.run()) == 1

        stderr = capsys.readouterr().err
        assert "a backend did not start" in stderr
        assert "no postgres today" in stderr
        spawned = {s.spec.name for s in suite.services}
        # The nodes need no backend: spawned at once, stopped with the rest.
        assert {"coordinator-1", "coordinator-2"} <= spawned
        # Auth, media and search use PostgreSQL: never spawned without it.
        assert not spawned & {"auth", "media", "search"}
        assert all(s.exited() for s in suite.services)
        assert suite.redis is not None
        assert not suite.redis.is_running()


def test_without_node_the_suite_is_planned_without_oidc_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("MARQUEE_UP_OIDC", raising=False)
    suite = Launcher(LaunchOptions(data_dir=tmp_path, base_port=0, coordinators=1))
    suite.ports = plan_for_data_dir(
        tmp_path, 0, [(s.name, s.node_id) for s in suite.specs], "127.0.0.1", warn=print
    )

    context = suite._context()

    assert context.oidc_providers is None
    assert suite.oidc is None
    lines = [line for line in capsys.readouterr().err.splitlines() if "OIDC" in line]
    assert lines == [
        "marquee up: OIDC login is off: node is not on PATH "
        "(oidc-provider needs Node.js 20 or later)"
    ]
