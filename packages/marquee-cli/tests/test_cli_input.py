"""What the commands refuse before any call, and how every error reads with --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from marquee_cli.main import app, wants_json
from marquee_localservers import free_port

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def json_error(result: Result) -> Any:
    """The error document: alone on stdout, one line."""
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)["error"]


@pytest.fixture
def nowhere() -> list[str]:
    """Addresses where nothing listens: a refused name must fail before trying them."""
    address = f"127.0.0.1:{free_port()}"
    return ["--endpoints", address, "--address", address]


@pytest.mark.parametrize(
    "argv",
    [
        ["lease", "get", "jobs/\na"],
        ["lease", "acquire", "jobs\x1b[31m", "--ttl", "10"],
        ["lease", "release", "jobs/a\x00", "--token", "1"],
        ["lease", "acquire", "jobs/a", "--ttl", "10", "--holder", "me\r"],
        ["lease", "list", "--prefix", "jobs/\t"],
        ["cache", "get", "key\n"],
        ["cache", "set", "key\x7f", "v"],
        ["cache", "del", "ok", "bad\x85"],
        ["cache", "prefix-del", "p\x08"],
    ],
)
def test_names_with_control_characters_are_refused(argv: list[str], nowhere: list[str]) -> None:
    target = nowhere[:2] if argv[0] == "lease" else nowhere[2:]
    result = invoke(*argv, *target)
    assert result.exit_code == 2, result.output
    assert "control characters" in result.output


def test_the_refusal_names_the_characters() -> None:
    result = invoke("lease", "get", "a\nb\x1b", "--json", "--endpoints", "127.0.0.1:1")
    assert result.exit_code == 2
    error = json_error(result)
    assert error["kind"] == "usage"
    assert "\\n" in error["message"]
    assert "\\x1b" in error["message"]


def test_names_that_are_not_utf8_are_refused() -> None:
    # How a shell's non-UTF-8 bytes arrive in sys.argv (surrogateescape).
    result = invoke("cache", "get", b"k\xff".decode("utf-8", "surrogateescape"), "--json")
    assert result.exit_code == 2
    assert "not valid UTF-8" in json_error(result)["message"]


def test_a_lease_name_over_the_server_limit_is_refused() -> None:
    result = invoke("lease", "get", "n" * 257, "--endpoints", "127.0.0.1:1")
    assert result.exit_code == 2
    assert "257 bytes" in result.output


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (["lease", "acquire", "a", "--ttl", "0.5"], "--ttl"),
        (["lease", "acquire", "a", "--ttl", "86401"], "--ttl"),
        (["lease", "acquire", "a", "--ttl", "10", "--wait", "-1"], "--wait"),
        (["lease", "release", "a", "--token", "0"], "--token"),
        (["cache", "set", "k", "v", "--ttl", "1e12"], "--ttl"),
        (["cache", "set", "k", "v", "--ttl", "0"], "--ttl"),
        # Past the protobuf or gRPC types behind them, these used to crash with a traceback.
        (["lease", "list", "--limit", str(2**32)], "--limit"),
        (["lease", "release", "a", "--token", str(2**64)], "--token"),
        (["lease", "get", "a", "--timeout", "1e300"], "--timeout"),
        (["cache", "get", "k", "--timeout", "1e300"], "--timeout"),
        (["cache", "get", "k", "--max-message-bytes", str(2**31)], "--max-message-bytes"),
        (["down", "--timeout", "1e300"], "--timeout"),
    ],
)
def test_option_ranges_match_the_server(argv: list[str], bad: str, nowhere: list[str]) -> None:
    target = {"lease": nowhere[:2], "cache": nowhere[2:]}.get(argv[0], [])
    result = invoke(*argv, *target, "--json")
    assert result.exit_code == 2, result.output
    error = json_error(result)
    assert error["kind"] == "usage"
    assert bad in error["message"]


def test_errors_are_json_on_stdout_with_json(tmp_path: Path) -> None:
    no_suite = invoke("lease", "list", "--data-dir", str(tmp_path), "--json")
    assert no_suite.exit_code == 1
    assert "no suite running" in json_error(no_suite)["message"]
    assert no_suite.stderr == ""

    unreachable = invoke(
        "cluster", "status", "--endpoints", "127.0.0.1:1", "--timeout", "0.5", "--json"
    )
    assert unreachable.exit_code == 1
    assert "no coordinator answered" in json_error(unreachable)["message"]

    usage = invoke("cache", "get", "--json")  # no KEY
    assert usage.exit_code == 2
    assert json_error(usage)["kind"] == "usage"

    unknown = invoke("lease", "frobnicate", "--json")
    assert unknown.exit_code == 2
    assert "frobnicate" in json_error(unknown)["message"]


def test_without_json_errors_stay_one_line_on_stderr(tmp_path: Path) -> None:
    result = invoke("cache", "get", "k", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("marquee: no suite running")
    assert result.stderr.count("\n") == 1


def test_grpc_errors_carry_their_status_code() -> None:
    result = invoke("cache", "get", "k", "--address", f"127.0.0.1:{free_port()}", "--json")
    assert result.exit_code == 1
    assert json_error(result)["grpc_status"] == "UNAVAILABLE"


def test_json_is_asked_for_by_an_option_only() -> None:
    assert wants_json(["lease", "get", "x", "--json"])
    assert not wants_json(["cache", "set", "k", "--", "--json"])
    assert not wants_json(["status"])
