"""`make run` to all SERVING (issue 15, item 3): `marquee up` timed from its spawn to
<data>/endpoints.json, which the launcher writes once every service answers SERVING.

Each round times a first start (a new data dir: initdb, migrations, the search
demo catalogue, a new Raft cluster) and a restart of that same data dir, for
this checkout's launcher and, with BENCH_PEER_SRC=<dir holding marquee_cli>,
for another launcher (e.g. an older commit's packages/marquee-cli/src, from
`git archive`) in the same run, alternating which goes first. Services,
backends and interpreter are this checkout's for both. Prints the median and
spread of each figure with the load average before and after.

`.venv/bin/python bench/suite_up/run.py` - settings: BENCH_ROUNDS (5),
BENCH_PEER_SRC (unset: no peer), BENCH_STORAGE (local).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTUP_SECONDS = 120.0
STOP_SECONDS = 30.0


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def time_up(data_dir: Path, src: Path | None, storage: str) -> float:
    """Seconds from spawning `marquee up` to its endpoints.json; then it is stopped."""
    endpoints = data_dir / "endpoints.json"
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-c", "from marquee_cli.main import app; app()",
        "up", "--data-dir", str(data_dir), "--base-port", "0", "--storage", storage,
    ]  # fmt: skip
    if src is not None:
        # An older launcher may not know --storage.
        command = command[:-2]
    started = time.monotonic()
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not endpoints.exists():
            if launcher.poll() is not None:
                raise SystemExit(f"marquee up exited: {launcher.stderr.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() - started > STARTUP_SECONDS:
                raise SystemExit(f"no endpoints.json after {STARTUP_SECONDS:g}s")
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f}s  min {min(values):.2f}  max {max(values):.2f}"
        f"  ({', '.join(f'{v:.2f}' for v in values)})"
    )


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    storage = os.environ.get("BENCH_STORAGE", "local")
    peer = os.environ.get("BENCH_PEER_SRC")
    sides: dict[str, Path | None] = {"this": None}
    if peer:
        sides["peer"] = Path(peer).absolute()
    figures: dict[tuple[str, str], list[float]] = {}
    print(f"load before: {load()}", flush=True)
    for round_ in range(rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
                first = time_up(Path(tmp), sides[side], storage)
                again = time_up(Path(tmp), sides[side], storage)
            figures.setdefault((side, "first start"), []).append(first)
            figures.setdefault((side, "restart"), []).append(again)
            print(f"round {round_ + 1} {side}: first {first:.2f}s restart {again:.2f}s", flush=True)
    print(f"load after: {load()}")
    for (side, what), values in figures.items():
        print(f"{side:5} {what:12} {summary(values)}")


if __name__ == "__main__":
    main()
