from __future__ import annotations

import json
from datetime import UTC, datetime

from marquee_cli.endpoints import Endpoints, ProcessEndpoint
from marquee_cli.output import endpoints_table, grpcurl_lines, render_json, render_table

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
