"""The fenced store and its checker catch what they must (they guard the fault tests)."""

from __future__ import annotations

import pytest
from fencing_resource import FencedStore, Write, check_writes


def test_a_lower_token_is_fenced_off_and_equal_or_higher_accepted() -> None:
    store = FencedStore()
    assert store.write("r", "a", 2, started=0.0)
    assert store.write("r", "a", 2, started=0.0)
    assert not store.write("r", "old", 1, started=0.0)
    assert store.write("r", "b", 3, started=0.0)
    assert store.write("other", "c", 1, started=0.0)
    assert (store.highest("r"), len(store.accepted()), len(store.rejected())) == (3, 4, 1)
    with pytest.raises(AssertionError, match="fenced off"):
        check_writes(store.writes)


def test_sequential_grants_pass() -> None:
    check_writes(
        [
            Write("r", "a", 1, 0.0, 1.0, True),
            Write("r", "a", 1, 1.5, 2.0, True),
            Write("r", "b", 2, 2.0, 3.0, True),
            Write("s", "a", 7, 0.5, 2.5, True),
        ]
    )


def test_overlapping_grants_fail() -> None:
    with pytest.raises(AssertionError, match="overlaps"):
        check_writes([Write("r", "a", 1, 0.0, 1.0, True), Write("r", "b", 2, 0.9, 1.2, True)])
    # One grant's window spans all its writes: a newer grant inside it overlaps too.
    with pytest.raises(AssertionError, match="overlaps"):
        check_writes(
            [
                Write("r", "a", 1, 0.0, 0.1, True),
                Write("r", "a", 1, 0.7, 0.8, True),
                Write("r", "b", 2, 0.5, 0.9, True),
            ]
        )


def test_a_token_shared_by_two_holders_fails() -> None:
    with pytest.raises(AssertionError, match="used by"):
        check_writes([Write("r", "a", 1, 0.0, 1.0, True), Write("r", "b", 1, 2.0, 3.0, True)])
