from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from localservers_support import process_gone

import marquee_localservers.postgres as postgres_module
from marquee_localservers import (
    BackendUnavailable,
    PostgresServer,
    find_postgres_bindir,
    server_data_dir,
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with server_data_dir() as data_dir, PostgresServer(data_dir) as server:
        yield server


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    with server_data_dir() as data_dir:
        yield data_dir


async def fetch(url: str, query: str) -> object:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


async def test_url_reaches_the_marquee_database(server: PostgresServer) -> None:
    assert server.url == f"postgresql://marquee@127.0.0.1:{server.port}/marquee"
    assert await fetch(server.url, "SELECT current_database()") == "marquee"
    assert await fetch(server.url, "SHOW fsync") == "on"


async def test_tables_survive_stop_and_start(server: PostgresServer) -> None:
    await fetch(server.url, "CREATE TABLE kept AS SELECT 42 AS answer")
    server.stop()
    assert not server.is_running()
    # A new object on the same directory reuses the cluster (no second initdb).
    reopened = PostgresServer(server.data_dir, port=server.port)
    with reopened:
        assert await fetch(reopened.url, "SELECT answer FROM kept") == 42
    server.start()


async def test_kill_then_start_recovers(server: PostgresServer) -> None:
    pid = server.pid
    assert pid is not None
    server.kill()
    assert process_gone(pid, timeout=0.1)
    server.start()
    assert await fetch(server.url, "SELECT 1") == 1


def test_bad_bindir_is_a_clear_error(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path, bindir=tmp_path / "no-such-bin")
    with pytest.raises(BackendUnavailable, match=r"not found in .*no-such-bin"):
        server.start()


def test_pgserver_wheel_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres_module, "_SYSTEM_BINDIRS", "/nonexistent/*/bin")
    assert find_postgres_bindir().parts[-3:] == ("pgserver", "pginstall", "bin")


async def test_pgserver_binaries_run_a_named_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres_module, "_SYSTEM_BINDIRS", "/nonexistent/*/bin")
    with PostgresServer(tmp_path / "pg", database="app-db", user="app") as server:
        assert await fetch(server.url, "SELECT current_user || '/' || current_database()") == (
            "app/app-db"
        )
