"""Two runner processes, one periodic job, a real 3-node coordinator and PostgreSQL (J-1, K-8).

Each runner is its own OS process (runner_process.py) holding the job's lease
through CoordinatorLeases; every run records its start and end in PostgreSQL
with its fencing token, and fenced_write refusals are recorded too. The
holder is killed (kill -9) or frozen (SIGSTOP past the lease TTL) mid-job.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
from runner_process import LEASE_TTL, create_tables

from marquee_testing.coordinator import CoordinatorCluster

RUNNER_SCRIPT = Path(__file__).with_name("runner_process.py")
T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    id: int
    runner: str
    token: int
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class Refusal:
    runner: str
    token: int
    highest: int


class Runners:
    """Runner processes for one job, logging to files in `log_dir`."""

    def __init__(
        self, database_url: str, cluster: CoordinatorCluster, job: str, log_dir: Path
    ) -> None:
        self.database_url = database_url
        self.cluster = cluster
        self.job = job
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        endpoints = ",".join(self.cluster.endpoints)
        with (self.log_dir / f"runner-{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, str(RUNNER_SCRIPT), name, self.database_url, self.job, endpoints],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.processes[name].pid, sig)

    def close(self) -> None:
        for process in self.processes.values():
            # SIGKILL ends a stopped process too.
            process.kill()
            process.wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
            for path in sorted(self.log_dir.glob("runner-*.log"))
        )


@contextmanager
def runners(
    database_url: str, cluster: CoordinatorCluster, job: str, log_dir: Path
) -> Iterator[Runners]:
    started = Runners(database_url, cluster, job, log_dir)
    try:
        yield started
    finally:
        started.close()


async def runs(pool: asyncpg.Pool) -> list[Run]:
    rows = await pool.fetch("SELECT * FROM runs ORDER BY id")
    return [Run(r["id"], r["runner"], r["token"], r["started_at"], r["ended_at"]) for r in rows]


async def refusals(pool: asyncpg.Pool) -> list[Refusal]:
    rows = await pool.fetch("SELECT runner, token, highest FROM refusals ORDER BY at")
    return [Refusal(r["runner"], r["token"], r["highest"]) for r in rows]


async def until(
    find: Callable[[], Awaitable[T | None]], what: str, logs: Callable[[], str], within: float
) -> T:
    deadline = time.monotonic() + within
    while (found := await find()) is None:
        assert time.monotonic() < deadline, f"{what}: not within {within} s\n{logs()}"
        await asyncio.sleep(0.02)
    return found


def first(history: list[Run], keep: Callable[[Run], bool]) -> Run | None:
    return next((run for run in history if keep(run)), None)


def assert_never_concurrent(history: list[Run]) -> None:
    """Runs whose end was admitted never overlap, and their tokens only grow.

    A run with no end was killed or had its end refused: none of its work after
    the start was admitted.
    """
    completed = sorted((r for r in history if r.ended_at is not None), key=lambda r: r.started_at)
    for before, after in itertools.pairwise(completed):
        assert before.ended_at is not None
        assert before.ended_at <= after.started_at, (before, after)
        assert before.token <= after.token, (before, after)


async def holder_mid_job(pool: asyncpg.Pool, logs: Callable[[], str]) -> Run:
    """The holder after one whole run, caught at the start of its next one."""
    done = await until(
        lambda: _first_run(pool, lambda r: r.ended_at is not None), "a first run", logs, 30
    )
    return await until(
        lambda: _first_run(pool, lambda r: r.id > done.id and r.ended_at is None),
        "the next run",
        logs,
        10,
    )


async def _first_run(pool: asyncpg.Pool, keep: Callable[[Run], bool]) -> Run | None:
    return first(await runs(pool), keep)


async def test_kill_9_of_the_holder_mid_job_moves_the_job_to_the_other_runner(
    pool: asyncpg.Pool,
    scratch_database_url: str,
    coordinator_cluster: CoordinatorCluster,
    tmp_path: Path,
) -> None:
    await create_tables(pool)
    with runners(scratch_database_url, coordinator_cluster, "killed", tmp_path) as procs:
        procs.start("a")
        procs.start("b")
        victim = await holder_mid_job(pool, procs.logs)
        procs.signal(victim.runner, signal.SIGKILL)
        killed_at = await pool.fetchval("SELECT clock_timestamp()")
        other = "b" if victim.runner == "a" else "a"
        taken = await until(
            lambda: _first_run(pool, lambda r: r.runner == other and r.ended_at is not None),
            "a whole run on the other runner",
            procs.logs,
            LEASE_TTL + 10,
        )
    history = await runs(pool)
    # The killed run never ended; the job ran again on the other runner, later
    # and with a higher token, within about one lease TTL of the kill.
    assert first(history, lambda r: r.id == victim.id) == victim
    assert taken.token > victim.token
    assert (taken.started_at - killed_at).total_seconds() < LEASE_TTL + 2
    assert all(r.runner == other for r in history if r.id > victim.id)
    assert_never_concurrent(history)
    # A dead process writes nothing late: nothing was refused.
    assert await refusals(pool) == []


async def test_a_frozen_holders_late_write_is_refused_by_the_fencing_token(
    pool: asyncpg.Pool,
    scratch_database_url: str,
    coordinator_cluster: CoordinatorCluster,
    tmp_path: Path,
) -> None:
    await create_tables(pool)
    with runners(scratch_database_url, coordinator_cluster, "frozen", tmp_path) as procs:
        procs.start("a")
        procs.start("b")
        frozen = await holder_mid_job(pool, procs.logs)
        procs.signal(frozen.runner, signal.SIGSTOP)
        other = "b" if frozen.runner == "a" else "a"
        # Frozen past its TTL, it loses the lease; the other runner's first fenced
        # write (its run's start) raises the resource's token past the frozen one.
        taken = await until(
            lambda: _first_run(pool, lambda r: r.runner == other),
            "a run on the other runner",
            procs.logs,
            LEASE_TTL + 10,
        )
        procs.signal(frozen.runner, signal.SIGCONT)
        refused = await until(
            lambda: _first_refusal(pool), "the late write's refusal", procs.logs, 10
        )
        # The other runner's run goes on to its end while the resumed one stays out.
        done = await until(
            lambda: _first_run(pool, lambda r: r.id >= taken.id and r.ended_at is not None),
            "the other runner's run to end",
            procs.logs,
            10,
        )
    history = await runs(pool)
    assert refused == Refusal(frozen.runner, frozen.token, taken.token)
    assert done.runner == other
    assert await refusals(pool) == [refused]
    assert first(history, lambda r: r.id == frozen.id) == frozen  # its end never landed
    assert all(r.runner == other for r in history if r.id > frozen.id)
    assert_never_concurrent(history)


async def _first_refusal(pool: asyncpg.Pool) -> Refusal | None:
    found = await refusals(pool)
    return found[0] if found else None
