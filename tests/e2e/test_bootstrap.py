"""scripts/bootstrap.sh (`make env`, run by `make run`): syncs .venv only when it must.

Runs the real script in a scratch copy of the workspace layout, with a fake
`uv` that records each call, so nothing is installed and no network is used.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_UV = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../uv-calls"
if [ "$1" = venv ]; then
  mkdir -p .venv/bin && printf '#!/bin/sh\\n' > .venv/bin/python && chmod +x .venv/bin/python
fi
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    (tmp_path / "requirements.lock").write_text("grpcio==1.0 --hash=sha256:00\n")
    for member in ("packages/marquee-cli", "services/auth"):
        (tmp_path / member).mkdir(parents=True)
        (tmp_path / member / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    uv = tmp_path / ".tools" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    uv.write_text(FAKE_UV)
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def bootstrap(workspace: Path, **env: str) -> list[str]:
    """Run the script; the uv calls it made."""
    calls = workspace / "uv-calls"
    calls.unlink(missing_ok=True)
    subprocess.run(
        ["bash", str(workspace / "scripts" / "bootstrap.sh")],
        check=True,
        timeout=60,
        env=os.environ | env,
    )
    return calls.read_text().splitlines() if calls.exists() else []


def synced(calls: list[str]) -> bool:
    return any(call.startswith("pip sync") for call in calls)


def test_a_fresh_clone_creates_and_syncs_the_venv(workspace: Path) -> None:
    calls = bootstrap(workspace)
    assert calls[0].startswith("venv")
    assert synced(calls)
    assert any(call.startswith("pip install") and "-e" in call for call in calls)
    assert (workspace / ".venv" / ".marquee-synced").exists()


def test_nothing_is_synced_when_nothing_changed(workspace: Path) -> None:
    bootstrap(workspace)
    assert bootstrap(workspace) == []


@pytest.mark.parametrize(
    "change", ["requirements.lock", "services/auth/pyproject.toml", "services/new/pyproject.toml"]
)
def test_a_changed_lock_or_member_syncs_again(workspace: Path, change: str) -> None:
    bootstrap(workspace)
    (workspace / change).parent.mkdir(parents=True, exist_ok=True)
    with (workspace / change).open("a") as file:
        file.write("# changed\n")
    assert synced(bootstrap(workspace))
    assert bootstrap(workspace) == []


def test_a_missing_venv_or_stamp_syncs_again(workspace: Path) -> None:
    bootstrap(workspace)
    (workspace / ".venv" / ".marquee-synced").unlink()
    assert synced(bootstrap(workspace))
    shutil.rmtree(workspace / ".venv")
    assert synced(bootstrap(workspace))


def test_force_syncs_anyway(workspace: Path) -> None:
    bootstrap(workspace)
    assert synced(bootstrap(workspace, MARQUEE_FORCE_SYNC="1"))
