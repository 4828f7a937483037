"""The replicated lease state machine, without Raft: rules, dedupe, epochs, determinism."""

from __future__ import annotations

import pickle
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from lease_history import check_events

from marquee_coordinator.expiry import Deadlines, Due
from marquee_coordinator.state import (
    Acquire,
    Batch,
    Command,
    Epoch,
    EventKind,
    Expire,
    GetLease,
    LeaseEvent,
    LeaseState,
    ListLeases,
    Rejection,
    Release,
    Renew,
    StartEpoch,
)

FIXTURE = Path(__file__).with_name("data") / "journal_before_scoped_request_ids.pickle"


def started(term: int = 1) -> LeaseState:
    state = LeaseState()
    state.apply(StartEpoch(Epoch(term, "n1")))
    return state


def test_tokens_grow_per_name_across_release_and_expiry() -> None:
    state = started()
    first, _ = state.apply(Acquire("job", "a", 5.0, "r1", epoch=1))
    assert first.lease is not None
    assert first.lease.token == 1
    state.apply(Release("job", "a", 1, "r2", epoch=1))
    second, _ = state.apply(Acquire("job", "b", 5.0, "r3", epoch=1))
    assert second.lease is not None
    assert second.lease.token == 2
    state.apply(Expire("job", 2, second.lease.revision, epoch=1))
    third, _ = state.apply(Acquire("job", "c", 5.0, "r4", epoch=1))
    assert third.lease is not None
    assert third.lease.token == 3
    other, _ = state.apply(Acquire("other", "c", 5.0, "r5", epoch=1))
    assert other.lease is not None
    assert other.lease.token == 1


def test_a_held_name_is_refused_with_the_current_lease() -> None:
    state = started()
    granted, _ = state.apply(Acquire("job", "a", 5.0, "", epoch=1))
    refused, events = state.apply(Acquire("job", "b", 5.0, "", epoch=1))
    assert refused.rejection is Rejection.HELD
    assert refused.lease == granted.lease
    assert events == ()


def test_renew_keeps_the_token_and_moves_the_revision() -> None:
    state = started()
    granted, _ = state.apply(Acquire("job", "a", 5.0, "", epoch=1))
    assert granted.lease is not None
    renewed, events = state.apply(Renew("job", "a", 1, "", epoch=1))
    assert renewed.lease is not None
    assert renewed.lease.token == 1
    assert renewed.lease.revision > granted.lease.revision
    assert [e.kind for e in events] == [EventKind.RENEWED]
    for wrong in (Renew("job", "b", 1, "", epoch=1), Renew("job", "a", 2, "", epoch=1)):
        outcome, _ = state.apply(wrong)
        assert outcome.rejection is Rejection.NOT_HELD


def test_a_retried_request_id_is_answered_without_a_second_grant() -> None:
    state = started()
    first, _ = state.apply(Acquire("job", "a", 5.0, "req-1", epoch=1))
    again, replay_events = state.apply(Acquire("job", "a", 5.0, "req-1", epoch=1))
    assert again.replayed
    assert again.lease == first.lease
    assert replay_events == ()
    state.apply(Release("job", "a", 1, "req-2", epoch=1))
    # Once the grant is over its retry is refused: not granted again, and not held.
    ended, replay_events = state.apply(Acquire("job", "a", 5.0, "req-1", epoch=1))
    assert (ended.rejection, ended.lease, replay_events) == (Rejection.GRANT_ENDED, None, ())
    assert "job" not in state.leases  # the release stands; nothing was granted again
    state.apply(Acquire("job", "b", 5.0, "req-3", epoch=1))
    ended, _ = state.apply(Acquire("job", "a", 5.0, "req-1", epoch=1))
    assert ended.rejection is Rejection.GRANT_ENDED
    assert ended.lease is not None
    assert (ended.lease.holder, ended.lease.token) == ("b", 2)
    # The same (name, holder, request id) with other arguments is a client's mistake.
    reused, _ = state.apply(Acquire("job", "a", 9.0, "req-1", epoch=1))
    assert reused.rejection is Rejection.REQUEST_ID_REUSED


def test_request_ids_are_scoped_to_the_name_and_the_holder() -> None:
    """lease.proto: a retry is the same (name, holder_id, request_id); other scopes are new."""
    state = started()
    first, _ = state.apply(Acquire("job", "a", 5.0, "r", epoch=1))
    other_name, _ = state.apply(Acquire("other", "a", 5.0, "r", epoch=1))
    other_holder, _ = state.apply(Acquire("job", "b", 5.0, "r", epoch=1))
    assert other_name.ok
    assert not other_name.replayed
    assert other_name.lease is not None
    assert other_name.lease.name == "other"
    assert (other_holder.rejection, other_holder.lease) == (Rejection.HELD, first.lease)
    again, _ = state.apply(Acquire("job", "a", 5.0, "r", epoch=1))
    assert again.replayed
    assert again.lease == first.lease
    assert set(state.requests) == {("job", "a", "r"), ("other", "a", "r")}


def test_the_dedupe_table_is_bounded_and_forgets_the_oldest() -> None:
    state = LeaseState(dedupe_capacity=2)
    state.apply(StartEpoch(Epoch(1, "n1")))
    for i in range(3):
        state.apply(Acquire(f"n{i}", "a", 5.0, f"r{i}", epoch=1))
    assert list(state.requests) == [("n1", "a", "r1"), ("n2", "a", "r2")]


def test_a_journal_written_before_request_ids_were_scoped_loads_and_replays_alike() -> None:
    """Entries and a full dump pickled by the previous state.py (tests/data, protocol 2 as
    pysyncobj writes them): they load, and replaying the old entries reaches exactly the
    state of the old dump, so a node that replays its journal and one that loads a dump
    agree. Old entries keep the old cluster-wide request ids; new ones are scoped."""
    fixture = pickle.loads(FIXTURE.read_bytes())
    entries = [pickle.loads(entry) for entry in fixture["entries"]]
    dumped: LeaseState = pickle.loads(fixture["dump"])
    replayed = LeaseState()
    for entry in entries:
        for command in entry.commands if isinstance(entry, Batch) else (entry,):
            replayed.apply(command)
            if isinstance(command, Acquire | Renew | Release):
                assert not command.scoped_id
    assert "other" not in replayed.leases  # refused then, so refused on replay too
    assert vars(replayed) == vars(dumped)

    for state in (replayed, dumped):
        # New commands are scoped: the old entry "r1" is no obstacle to another holder.
        granted, _ = state.apply(Acquire("other", "b", 5.0, "r1", epoch=1))
        assert granted.ok
        assert granted.lease is not None
        assert granted.lease.token == 1
        assert ("other", "b", "r1") in state.requests
        assert "r1" in state.requests
    assert vars(replayed) == vars(dumped)


def test_client_commands_survive_pickling_with_their_scope() -> None:
    for command in (
        Acquire("job", "a", 5.0, "r", epoch=1, value=b"v", sent_at=2.0),
        Renew("job", "a", 1, "r", epoch=1, ttl=3.0),
        Release("job", "a", 1, "r", epoch=1, scoped_id=False),
    ):
        assert pickle.loads(pickle.dumps(command, 2)) == command


def test_commands_from_a_replaced_epoch_are_refused_and_not_remembered() -> None:
    state = started(term=1)
    state.apply(StartEpoch(Epoch(3, "n2")))
    stale, events = state.apply(Acquire("job", "a", 5.0, "r1", epoch=1))
    assert stale.rejection is Rejection.STALE_EPOCH
    assert events == ()
    # The same request under the current epoch must still be able to succeed.
    fresh, _ = state.apply(Acquire("job", "a", 5.0, "r1", epoch=3))
    assert fresh.ok
    older, _ = state.apply(StartEpoch(Epoch(2, "n1")))
    assert older.rejection is Rejection.STALE_EPOCH
    assert state.epoch.term == 3


def test_expire_applies_only_to_the_lease_the_leader_saw() -> None:
    state = started(term=1)
    granted, _ = state.apply(Acquire("job", "a", 5.0, "", epoch=1))
    assert granted.lease is not None
    decided = Expire("job", 1, granted.lease.revision, epoch=1)
    state.apply(Renew("job", "a", 1, "", epoch=1))  # renewed after the leader decided
    outcome, events = state.apply(decided)
    assert outcome.rejection is Rejection.NOT_HELD
    assert events == ()
    renewed = state.leases["job"]
    state.apply(StartEpoch(Epoch(2, "n2")))  # a new leader restarted every deadline
    outcome, _ = state.apply(Expire("job", 1, renewed.revision, epoch=1))
    assert outcome.rejection is Rejection.STALE_EPOCH
    outcome, events = state.apply(Expire("job", 1, renewed.revision, epoch=2))
    assert outcome.ok
    assert [e.kind for e in events] == [EventKind.EXPIRED]


def test_reads_see_the_state_and_change_nothing() -> None:
    state = started()
    state.apply(Acquire("jobs/a", "x", 5.0, "", epoch=1))
    state.apply(Acquire("jobs/b", "x", 5.0, "", epoch=1))
    state.apply(Acquire("other", "x", 5.0, "", epoch=1))
    revision = state.revision
    got, _ = state.apply(GetLease("jobs/a"))
    assert got.lease is not None
    assert got.lease.holder == "x"
    listed, _ = state.apply(ListLeases("jobs/"))
    assert [lease.name for lease in listed.leases] == ["jobs/a", "jobs/b"]
    assert state.revision == revision


def test_events_since_reports_a_gap_when_history_was_dropped() -> None:
    state = LeaseState(history_capacity=2)
    state.apply(StartEpoch(Epoch(1, "n1")))
    for i in range(4):
        state.apply(Acquire(f"n{i}", "a", 5.0, "", epoch=1))
    assert state.events_since(0) is None
    kept = state.events_since(2)
    assert kept is not None
    assert [e.revision for e in kept] == [3, 4]
    assert state.events_since(4) == ()


def test_deadlines_restart_and_propose_each_expiry_once() -> None:
    state = started()
    granted, events = state.apply(Acquire("job", "a", 2.0, "", epoch=1))
    assert granted.lease is not None
    deadlines = Deadlines()
    deadlines.on_event(events[0], now=100.0)
    assert deadlines.due(101.9) == []
    due = Due("job", 1, granted.lease.revision)
    assert deadlines.due(102.0) == [due]
    assert deadlines.due(102.5) == []  # already in flight
    deadlines.resolved(due)
    assert deadlines.due(102.5) == [due]
    deadlines.restart_all(state.leases.values(), now=200.0)  # a new epoch
    assert deadlines.due(201.9) == []
    assert deadlines.deadline("job") == 202.0


# --- randomized: determinism and the history checker ------------------------------

names = st.sampled_from(["a", "b", "c"])
holders = st.sampled_from(["h1", "h2", "h3"])
request_ids = st.sampled_from(["", "", "r1", "r2", "r3", "r4"])
epochs = st.integers(min_value=1, max_value=4)
tokens = st.integers(min_value=1, max_value=6)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(Acquire, names, holders, st.sampled_from([1.0, 5.0]), request_ids, epochs),
    st.builds(Renew, names, holders, tokens, request_ids, epochs),
    st.builds(Release, names, holders, tokens, request_ids, epochs),
    st.builds(Expire, names, tokens, st.integers(min_value=0, max_value=40), epochs),
    st.builds(StartEpoch, st.builds(Epoch, epochs, st.sampled_from(["n1", "n2"]))),
    st.builds(GetLease, names),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=60))
def test_random_histories_are_safe_and_replicas_agree(log: list[Command]) -> None:
    replica, other = LeaseState(dedupe_capacity=3), LeaseState(dedupe_capacity=3)
    events: list[LeaseEvent] = []
    for command in log:
        outcome, new = replica.apply(command)
        assert other.apply(command) == (outcome, new)
        events.extend(new)
    check_events(events)
    # The full dump is a pickle of the state: a restored replica carries on identically.
    restored: LeaseState = pickle.loads(pickle.dumps(replica))
    probe = Acquire("a", "h9", 5.0, "probe", epoch=replica.epoch.term)
    assert restored.apply(probe) == replica.apply(probe)
