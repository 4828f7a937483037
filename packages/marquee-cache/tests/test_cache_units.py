"""The pure pieces, without Redis: L1, the fill guard, the breaker, glob escaping, local GCRA."""

from __future__ import annotations

from time import monotonic

from marquee_cache import BreakerState, CircuitBreaker, LocalLimiter, escape_glob
from marquee_cache.fill_guard import FillGuard
from marquee_cache.l1 import ABSENT, L1


def test_l1_expiry_and_negative_entries() -> None:
    l1 = L1(10)
    l1.put("a", b"1", monotonic() + 60)
    l1.put("gone", b"x", monotonic() - 1)
    l1.put("absent", None, monotonic() + 60)
    assert l1.get("a") == b"1"
    assert l1.get("gone") is ABSENT
    assert l1.get("absent") is None
    assert l1.get("never") is ABSENT


def test_l1_stays_bounded() -> None:
    l1 = L1(100)
    for i in range(1000):
        l1.put(f"k{i}", b"v", monotonic() + 60)
        assert len(l1) <= 100
    assert l1.get("k999") == b"v"


def test_l1_prefix_discard() -> None:
    l1 = L1(10)
    for key in ("p:1", "p:2", "q:1"):
        l1.put(key, b"v", monotonic() + 60)
    l1.discard_prefix("p:")
    assert list(l1.entries) == ["q:1"]


def test_fill_guard_refuses_late_fills() -> None:
    guard = FillGuard()
    clean, hit, reset = guard.begin("a"), guard.begin("b"), guard.begin("c")
    guard.invalidate(["b"])
    assert guard.settle(clean)
    assert not guard.settle(hit)
    guard.reset()
    assert not guard.settle(reset)
    assert guard.in_flight == 0
    after = guard.begin("b")
    assert guard.settle(after), "an invalidation must not poison later reads"


def test_fill_guard_prefix() -> None:
    guard = FillGuard()
    inside, outside = guard.begin("p:1"), guard.begin("q:1")
    guard.invalidate_prefix("p:")
    assert not guard.settle(inside)
    assert guard.settle(outside)


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=1.0, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    now[0] = 1.5
    assert breaker.allow(), "half-open lets one probe through"
    assert not breaker.allow(), "...and only one"
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    now[0] = 3.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state.value == "closed"


def test_breaker_abandoned_probe_frees_the_slot() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1.0, clock=lambda: now[0])
    breaker.record_failure()
    now[0] = 2.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


def test_escape_glob() -> None:
    assert escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert escape_glob("plain:") == "plain:"


def test_local_limiter_burst_then_refill() -> None:
    limiter = LocalLimiter()
    decisions = [limiter.hit("k", limit=5, window=60) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert 11.9 < decisions[5].retry_after <= 12.0
    assert all(d.source == "local" for d in decisions)
