"""The commands end to end in-process, against stand-in pids and a real health server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from cli_health_server import DOWN, UP, health_server
from typer.testing import CliRunner, Result

from marquee_cli.endpoints import Endpoints, ProcessEndpoint, now, write_endpoints
from marquee_cli.main import app

runner = CliRunner()


def test_status_without_a_suite(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "no suite running" in result.output


def write_suite(data_dir: Path, address: str) -> None:
    """An endpoints file naming this process as the launcher and one service at `address`."""
    write_endpoints(
        data_dir / "endpoints.json",
        Endpoints(
            launcher_pid=os.getpid(),
            started_at=now(),
            processes=[
                ProcessEndpoint("search", "service", os.getpid(), grpc=address, metrics="x:1")
            ],
        ),
    )


async def status(data_dir: Path, *args: str) -> Result:
    # status runs its own event loop, so it cannot share this test's thread.
    return await asyncio.to_thread(
        runner.invoke, app, ["status", "--data-dir", str(data_dir), *args]
    )


async def test_status_json_reports_health(tmp_path: Path) -> None:
    async with health_server(down=False) as address:
        write_suite(tmp_path, address)
        result = await status(tmp_path, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["running"] is True
    assert document["healthy"] is True
    [search] = document["processes"]
    assert (search["name"], search["alive"], search["health"]) == ("search", True, "SERVING")
    assert search["services"] == {UP: "SERVING"}
    assert (search["restarts"], search["last_exit"]) == (0, None)  # as `marquee up` records them


async def test_status_reports_a_service_that_is_not_serving(tmp_path: Path) -> None:
    # The process as a whole ("") is SERVING; one of its services is not.
    async with health_server() as address:
        write_suite(tmp_path, address)
        as_json = await status(tmp_path, "--json")
        as_text = await status(tmp_path)
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert document["healthy"] is False
    [search] = document["processes"]
    assert search["server_health"] == "SERVING"
    assert search["services"] == {DOWN: "NOT_SERVING", UP: "SERVING"}
    assert (search["health"], search["ok"]) == ("NOT_SERVING", False)
    assert as_text.exit_code == 1
    rows = [line.split() for line in as_text.stdout.splitlines()]
    assert ["search", "service", str(os.getpid()), "yes", "NOT_SERVING", "0", address] in rows
    assert ["SERVICE", "PROCESS", "HEALTH"] in rows
    assert [DOWN, "search", "NOT_SERVING"] in rows
    assert [UP, "search", "SERVING"] in rows


def test_down_signals_the_launcher_and_waits(tmp_path: Path) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_endpoints(
        tmp_path / "endpoints.json",
        Endpoints(launcher_pid=launcher.pid, started_at=now(), processes=[]),
    )
    result = runner.invoke(app, ["down", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"outcome": "stopped", "launcher_pid": launcher.pid}
    # `down` already waited it out (and, being its parent here, reaped it).
    assert launcher.poll() is not None


def test_down_removes_a_stale_endpoints_file(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = tmp_path / "endpoints.json"
    write_endpoints(path, Endpoints(launcher_pid=gone.pid, started_at=now(), processes=[]))
    result = runner.invoke(app, ["down", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "stale" in result.output
    assert not path.exists()


def test_up_rejects_a_base_port_without_room(tmp_path: Path) -> None:
    result = runner.invoke(app, ["up", "--data-dir", str(tmp_path), "--base-port", "65500"])
    assert result.exit_code == 2
    assert "base port" in result.output
