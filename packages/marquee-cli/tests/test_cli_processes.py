from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from marquee_cli.processes import RUN_MARKER, describe_exit, log_tail, mark_run


def test_log_tail_shows_only_the_current_run(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    mark_run(log, "svc")
    with log.open("a") as f:
        f.write("old run\n")
    mark_run(log, "svc")
    with log.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(30)))
    tail = log_tail(log, lines=5)
    assert tail == [f"line {i}" for i in range(25, 30)]
    assert not any(RUN_MARKER in line or "old run" in line for line in log_tail(log, lines=100))


def test_log_tail_of_missing_log(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "nope.log") == []


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"


PARENT = """
import os, sys, time
from pathlib import Path
from marquee_cli.processes import spawn
child = spawn([sys.executable, "-c", "import time; time.sleep(60)"], os.environ, Path(sys.argv[1]))
print(child.pid, flush=True)
time.sleep(60)
"""


def test_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "child.log")], stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
