from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from marquee_cli.endpoints import (
    Endpoints,
    EndpointsFileError,
    ProcessEndpoint,
    read_endpoints,
    write_endpoints,
)

SAMPLE = Endpoints(
    launcher_pid=4242,
    started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    processes=[
        ProcessEndpoint("redis", "backend", 100, url="redis://127.0.0.1:50350/0"),
        ProcessEndpoint(
            "search", "service", 101, grpc="127.0.0.1:50053", metrics="127.0.0.1:50153"
        ),
    ],
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    write_endpoints(path, SAMPLE)
    assert read_endpoints(path) == SAMPLE


def test_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    write_endpoints(path, SAMPLE)
    document = json.loads(path.read_text())
    assert document["launcher_pid"] == 4242
    assert datetime.fromisoformat(document["started_at"]) == SAMPLE.started_at
    redis, search = document["processes"]
    never_restarted = {"restarts": 0, "last_exit": None, "last_restart_at": None}
    assert redis == {
        "name": "redis",
        "role": "backend",
        "pid": 100,
        "url": SAMPLE.processes[0].url,
        **never_restarted,
    }
    assert search == {
        "name": "search",
        "role": "service",
        "pid": 101,
        "grpc": "127.0.0.1:50053",
        "metrics": "127.0.0.1:50153",
        **never_restarted,
    }


def test_restarts_and_raft_address_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    node = ProcessEndpoint(
        "coordinator-1",
        "raft node",
        102,
        grpc="127.0.0.1:50054",
        metrics="127.0.0.1:50154",
        raft="127.0.0.1:50250",
        restarts=2,
        last_exit="killed by SIGKILL",
        last_restart_at=datetime(2025, 1, 2, 3, 5, 0, tzinfo=UTC),
    )
    write_endpoints(path, Endpoints(4242, SAMPLE.started_at, [node]))
    assert read_endpoints(path).processes == [node]
    document = json.loads(path.read_text())["processes"][0]
    assert document["raft"] == "127.0.0.1:50250"
    assert (document["restarts"], document["last_exit"]) == (2, "killed by SIGKILL")
    assert document["last_restart_at"] == "2025-01-02T03:05:00+00:00"


def test_a_file_from_before_supervision_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    old = {"name": "search", "role": "service", "pid": 101, "grpc": "h:1", "metrics": "h:2"}
    path.write_text(
        json.dumps(
            {"launcher_pid": 1, "started_at": "2025-01-02T03:04:05+00:00", "processes": [old]}
        )
    )
    [search] = read_endpoints(path).processes
    assert (search.restarts, search.last_exit, search.last_restart_at, search.raft) == (
        0,
        None,
        None,
        None,
    )


def test_overwrite_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    write_endpoints(path, SAMPLE)
    write_endpoints(path, SAMPLE)
    assert [p.name for p in tmp_path.iterdir()] == ["endpoints.json"]


def test_services_excludes_backends() -> None:
    assert [p.name for p in SAMPLE.services] == ["search"]


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text('{"launcher_pid": 1}')
    with pytest.raises(EndpointsFileError):
        read_endpoints(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_endpoints(tmp_path / "endpoints.json")
