"""Elections made visible (issue 9 item 9): the pace warning and the election outcomes."""

from __future__ import annotations

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from marquee_coordinator.membership import Role
from marquee_coordinator.raft_watch import WARN_EVERY, ElectionPace, RaftWatch

TIMEOUT = 1.0


def test_one_election_per_timeout_or_slower_is_no_warning() -> None:
    pace = ElectionPace(TIMEOUT)
    assert pace.observe(7, now=100.0) is None  # the term the node started in
    assert pace.observe(7, now=100.5) is None
    for i, now in enumerate((101.0, 102.0, 103.5, 110.0)):
        assert pace.observe(8 + i, now) is None


def test_new_terms_closer_than_an_election_timeout_warn() -> None:
    pace = ElectionPace(TIMEOUT)
    pace.observe(1, now=0.0)
    assert pace.observe(2, now=10.0) is None
    warning = pace.observe(3, now=10.4)
    assert warning is not None
    assert (warning.term, round(warning.gap, 3), warning.recent) == (3, 0.4, 2)


def test_several_terms_at_once_warn() -> None:
    pace = ElectionPace(TIMEOUT)
    pace.observe(1, now=0.0)
    warning = pace.observe(4, now=5.0)
    assert warning is not None
    assert (warning.term, warning.gap, warning.recent) == (4, 0.0, 3)


def test_a_storm_warns_once_per_period_and_counts_the_last_minute() -> None:
    pace = ElectionPace(TIMEOUT)
    pace.observe(0, now=0.0)
    warned = []
    for i in range(1, 13):  # 12 elections in 6 s
        if pace.observe(i, now=i * 0.5) is not None:
            warned.append(i)
    assert WARN_EVERY > 6.0
    assert warned == [2]  # one storm, one warning
    later = pace.observe(13, now=6.5 + WARN_EVERY)
    assert later is None  # 6.5 s after the last one: slow enough
    again = pace.observe(14, now=6.6 + WARN_EVERY)
    assert again is not None
    assert again.recent == 14  # every term since the start is within the last minute


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_watch_counts_election_outcomes_and_leaderships_and_logs_them() -> None:
    watch = RaftWatch("n1", TIMEOUT)
    before = {
        outcome: sample("marquee_coordinator_elections_total", outcome=outcome)
        for outcome in ("won", "lost", "timed_out")
    }
    changes = sample("marquee_coordinator_leader_changes_total")
    with capture_logs() as logs:
        # Starting together, members may split their first votes: no warning before a leader.
        watch.on_tick(-0.3, 0, Role.FOLLOWER, None)
        watch.on_tick(-0.25, 1, Role.FOLLOWER, None)
        watch.on_tick(-0.2, 1, Role.FOLLOWER, "n2")
        watch.on_tick(0.0, 1, Role.FOLLOWER, "n2")
        watch.on_state_changed(Role.FOLLOWER, Role.CANDIDATE, term=1)  # campaigns in term 2
        watch.on_tick(0.1, 2, Role.CANDIDATE, None)
        watch.on_tick(0.3, 3, Role.CANDIDATE, None)  # no winner: campaigns again
        watch.on_state_changed(Role.CANDIDATE, Role.LEADER, term=3)
        watch.on_tick(0.35, 3, Role.LEADER, "n1")
        watch.on_tick(0.4, 3, Role.LEADER, "n1")
        watch.on_state_changed(Role.LEADER, Role.FOLLOWER, term=4)
        watch.on_state_changed(Role.FOLLOWER, Role.CANDIDATE, term=4)
        watch.on_state_changed(Role.CANDIDATE, Role.FOLLOWER, term=6)
        watch.on_tick(5.0, 6, Role.FOLLOWER, "n3")
    after = {
        outcome: sample("marquee_coordinator_elections_total", outcome=outcome)
        for outcome in ("won", "lost", "timed_out")
    }
    assert {k: after[k] - before[k] for k in after} == {"won": 1, "lost": 1, "timed_out": 1}
    assert sample("marquee_coordinator_leader_changes_total") - changes == 3
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1  # terms 2 and 3 came 0.2 s apart
    assert warnings[0]["term"] == 3
    assert warnings[0]["elections_last_minute"] == 2
    assert "faster than one per election timeout" in warnings[0]["event"]
    assert [e["term"] for e in logs if e["event"] == "new raft term"] == [2, 3, 6]
