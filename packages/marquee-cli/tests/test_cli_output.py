from __future__ import annotations

import json
from datetime import UTC, datetime

from marquee_cli.control import ProcessStatus
from marquee_cli.endpoints import Endpoints, ProcessEndpoint
from marquee_cli.output import (
    CommandError,
    endpoints_table,
    grpcurl_lines,
    render_json,
    render_table,
    status_tables,
)

ENDPOINTS = Endpoints(
    launcher_pid=1,
    started_at=datetime(2025, 1, 1, tzinfo=UTC),
    processes=[
        ProcessEndpoint("postgres", "backend", 7, url="postgresql://marquee@127.0.0.1:5/marquee"),
        ProcessEndpoint("auth", "service", 8, grpc="127.0.0.1:50051", metrics="127.0.0.1:50151"),
    ],
)


def test_table_aligns_columns_and_shows_none_as_dash() -> None:
    table = render_table(("A", "LONGER"), [("xyz", None), ("p", 12)])
    assert table.splitlines() == [
        "A    LONGER",
        "xyz  -",
        "p    12",
    ]


def test_table_cells_show_control_characters_as_escapes() -> None:
    table = render_table(("HOLDER",), [("evil\x1b[2J\nholder",)])
    assert table.splitlines() == ["HOLDER", "evil\\x1b[2J\\nholder"]


def test_json_is_one_line() -> None:
    text = render_json({"a": [1, 2], "b": "c"})
    assert "\n" not in text
    assert json.loads(text) == {"a": [1, 2], "b": "c"}


def test_endpoints_table() -> None:
    lines = endpoints_table(ENDPOINTS).splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "PID", "GRPC", "METRICS", "/", "URL"]
    assert lines[1].split() == ["postgres", "backend", "7", "-", ENDPOINTS.processes[0].url]
    assert lines[2].split() == [
        "auth",
        "service",
        "8",
        "127.0.0.1:50051",
        "http://127.0.0.1:50151/metrics",
    ]


def test_one_grpcurl_line_per_service() -> None:
    assert grpcurl_lines(ENDPOINTS) == "grpcurl -plaintext 127.0.0.1:50051 list    # auth"


def test_status_tables_show_services_and_restarts() -> None:
    restarted = ProcessEndpoint(
        "coordinator-2",
        "raft node",
        9,
        grpc="127.0.0.1:50056",
        metrics="127.0.0.1:50156",
        restarts=2,
        last_exit="killed by SIGKILL",
        last_restart_at=datetime(2025, 1, 1, 12, 0, 5, tzinfo=UTC),
    )
    statuses = [
        ProcessStatus(ENDPOINTS.processes[0], True, "LISTENING"),
        ProcessStatus(
            restarted, True, "SERVING", {"marquee.coordinator.v1.LeaseService": "SERVING"}
        ),
    ]
    sections = status_tables(statuses).split("\n\n")
    processes = [line.split() for line in sections[0].splitlines()]
    assert processes[0] == ["NAME", "ROLE", "PID", "ALIVE", "HEALTH", "RESTARTS", "ADDRESS"]
    assert processes[2] == [
        "coordinator-2",
        "raft",
        "node",
        "9",
        "yes",
        "SERVING",
        "2",
        "127.0.0.1:50056",
    ]
    assert sections[1].splitlines()[1].split() == [
        "marquee.coordinator.v1.LeaseService", "coordinator-2", "SERVING"
    ]  # fmt: skip
    assert sections[2] == (
        "coordinator-2: restarted 2 times, last at 2025-01-01T12:00:05+00:00 "
        "(last exit: killed by SIGKILL)"
    )


def test_status_tables_leave_out_empty_sections() -> None:
    assert "\n\n" not in status_tables([ProcessStatus(ENDPOINTS.processes[0], True, "LISTENING")])


def test_errors_as_json() -> None:
    error = CommandError("boom", grpc_status="UNAVAILABLE")
    assert error.exit_code == 1
    assert error.to_json() == {
        "error": {"kind": "error", "message": "boom", "grpc_status": "UNAVAILABLE"}
    }
