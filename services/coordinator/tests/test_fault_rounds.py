"""Randomized fault rounds on a real 3-node cluster with fenced workers (K-2, K-7, issue 3 item 8).

Each round applies one fault while workers hold leases and write with their tokens:
kill -9 of the leader or a follower (then restart), SIGSTOP of the leader or a
follower for longer than the lease TTL (then SIGCONT), kill -9 and restart of the
whole cluster, and replacing a member through MemberRemove/MemberAdd. Afterwards
the fenced store's history must show no overlap of two holders, no fenced-off
write and growing tokens, and every round must have made progress.

MARQUEE_FAULT_SEED fixes the seed (printed on every run, failing or not);
MARQUEE_FAULT_ROUNDS sets the soak's length; MARQUEE_FAULT_LOCAL_RENEWAL=false runs
the soak with every renewal through the log (LOCAL_RENEWAL=false).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from fault_harness import DEFAULT, FAST, KINDS, Run, Timing, run_faults
from fencing_resource import check_writes


def seed() -> int:
    return int(os.environ.get("MARQUEE_FAULT_SEED") or random.SystemRandom().randrange(2**31))


def check_run(run: Run, rounds: int) -> None:
    print(run.report())
    assert len(run.rounds) == rounds
    check_writes(run.store.writes)
    # Grants, in the order the workers got them: per name each token is new and larger.
    last: dict[str, int] = {}
    for name, holder, token in run.grants:
        assert token > last.get(name, 0), f"{holder} got {name} with token {token} after {last}"
        last[name] = token
    # Every round waited for a write after healing; most also saw writes during the fault.
    assert sum(1 for r in run.rounds if r.writes > 0) == rounds
    assert all(r.failover is not None for r in run.rounds)


@pytest.mark.timeout(300)
async def test_fault_rounds(tmp_path: Path) -> None:
    rounds = 20
    started = time.monotonic()
    run = await run_faults(tmp_path, seed(), rounds)
    check_run(run, rounds)
    assert run.local_renewals > 0  # the leader lease was used, not only the log
    print(f"{rounds} rounds in {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(300)
async def test_fault_rounds_under_the_default_timing(tmp_path: Path) -> None:
    """Each fault kind once under the production timing (election 0.4-1.0 s, pause
    threshold 0.4 s, leader fallback 3.0 s against the fast 1.0 s), with 2 s leases: the
    shortest it allows, where lease safety leans hardest on those relations."""
    rounds = len(KINDS)  # the schedule has every kind once in its first len(KINDS) rounds
    started = time.monotonic()
    run = await run_faults(tmp_path, seed(), rounds, DEFAULT)
    check_run(run, rounds)
    assert sorted(r.kind for r in run.rounds) == sorted(KINDS)
    print(f"{rounds} rounds under the default timing in {time.monotonic() - started:.1f} s")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("timing", [FAST, DEFAULT], ids=["fast", "default"])
async def test_fault_rounds_with_every_renewal_in_the_log(tmp_path: Path, timing: Timing) -> None:
    """Each fault kind once with LOCAL_RENEWAL=false: every renewal a log command."""
    rounds = len(KINDS)
    started = time.monotonic()
    run = await run_faults(tmp_path, seed(), rounds, timing, local_renewal=False)
    check_run(run, rounds)
    print(f"{rounds} rounds ({timing.name}, log renewal) in {time.monotonic() - started:.1f} s")


@pytest.mark.soak
async def test_fault_rounds_soak(tmp_path: Path) -> None:
    rounds = int(os.environ.get("MARQUEE_FAULT_ROUNDS", "200"))
    started = time.monotonic()
    local = os.environ.get("MARQUEE_FAULT_LOCAL_RENEWAL", "true") == "true"
    run = await run_faults(tmp_path, seed(), rounds, local_renewal=local)
    check_run(run, rounds)
    print(f"{rounds} rounds (local renewal {local}) in {time.monotonic() - started:.1f} s")
