from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from localservers_support import process_gone

from marquee_localservers import (
    BackendUnavailable,
    RedisServer,
    ServerStartError,
    find_redis_server,
    free_port,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def test_url_names_host_and_port(server: RedisServer) -> None:
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server.is_running()
    assert server.pid is not None
    assert client(server).ping()


def test_writes_survive_stop_and_start(server: RedisServer) -> None:
    client(server).set("greeting", "hello")
    server.stop()
    assert not server.is_running()
    assert server.pid is None
    server.start()
    assert client(server).get("greeting") == b"hello"


def test_without_persistence_nothing_survives(tmp_path: Path) -> None:
    with RedisServer(tmp_path, persistent=False) as server:
        client(server).set("greeting", "hello")
        server.restart()
        assert client(server).get("greeting") is None


def test_restart_keeps_port(server: RedisServer) -> None:
    port, pid = server.port, server.pid
    server.restart()
    assert server.port == port
    assert server.pid != pid
    assert client(server).ping()


def test_kill_leaves_no_process_and_stop_is_idempotent(server: RedisServer) -> None:
    pid = server.pid
    assert pid is not None
    server.kill()
    assert process_gone(pid, timeout=0.1)
    assert not server.is_running()
    server.stop()
    server.stop()


def test_extra_args_reach_the_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path, extra_args=["--tracking-table-max-keys", "10"]) as server:
        assert client(server).config_get("tracking-table-max-keys") == {
            "tracking-table-max-keys": "10"
        }


def test_bad_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, binary=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(BackendUnavailable, match="no-such-redis-server"):
        server.start()
    assert not server.is_running()


def test_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-directive", "1"])
    with pytest.raises(ServerStartError, match=r"(?s)exited with code.*no-such-directive"):
        server.start()
    assert not server.is_running()


def test_busy_port_is_a_clear_error(server: RedisServer, tmp_path: Path) -> None:
    second = RedisServer(tmp_path / "second", port=server.port)
    with pytest.raises(ServerStartError, match="exited with code"):
        second.start(timeout=10)


def test_missing_binary_without_apt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("MARQUEE_NO_APT", "1")
    with pytest.raises(BackendUnavailable, match="MARQUEE_NO_APT"):
        find_redis_server()


def test_server_dies_with_a_crashed_parent(tmp_path: Path) -> None:
    # The parent exits without stopping anything (no atexit), as a crash would.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from marquee_localservers import RedisServer
        server = RedisServer(Path({str(tmp_path)!r}))
        server.start()
        print(server.pid, flush=True)
        os._exit(1)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert out.stdout.strip().isdigit(), out.stderr
    pid = int(out.stdout)
    assert process_gone(pid)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
