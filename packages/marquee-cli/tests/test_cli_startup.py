"""Commands import only what they use: the start-up of each stays near typer's own.

(How long it takes is bench/cli's business; these check which modules load.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from marquee_localservers import free_port

# Run a command in a fresh interpreter and list the modules it loaded.
SCRIPT = """
import sys
from typer.testing import CliRunner
from marquee_cli.main import app
CliRunner().invoke(app, sys.argv[1:])
print("\\n".join(sorted(sys.modules)))
"""
HEAVY = ("grpc", "google.protobuf", "psutil", "redis", "asyncpg", "rich", "pydantic_settings")
OURS_HEAVY = ("marquee_lease", "marquee_migrations", "marquee_localservers", "marquee_cli.launcher")


def loaded(*argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(result.stdout.split())


def roots(modules: set[str], names: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(m == n or m.startswith(n + ".") for m in modules)}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["status", "--data-dir", "{empty}"],
        ["down", "--data-dir", "{empty}"],
        ["lease", "get", "x", "--data-dir", "{empty}"],
        ["cache", "get", "x", "--data-dir", "{empty}"],
        ["migrate", "status", "--data-dir", "{empty}"],
        ["up", "--help"],
    ],
)
def test_commands_that_do_not_call_out_load_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    modules = loaded(*(a.format(empty=tmp_path) for a in argv))
    assert roots(modules, HEAVY) == set()
    assert roots(modules, OURS_HEAVY) == set()


def test_a_cache_call_loads_grpc_and_nothing_else_heavy() -> None:
    modules = loaded("cache", "get", "x", "--address", f"127.0.0.1:{free_port()}")
    assert roots(modules, HEAVY) == {"grpc", "google.protobuf"}
    assert roots(modules, OURS_HEAVY) == set()
