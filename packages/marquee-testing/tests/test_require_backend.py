from __future__ import annotations

import pytest

from marquee_testing.fixtures.containers import container_engine_available
from marquee_testing_support import run_inner

INNER = """
from marquee_testing import require_backend

def test_needs_a_backend():
    require_backend("thing", "not installed here")
"""


@pytest.mark.parametrize("ci", ["true", "TRUE"])
def test_missing_backend_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(INNER)
    result = run_inner(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*backend 'thing' unavailable: not installed here*"])


@pytest.mark.parametrize("ci", [None, "false", "1"])
def test_missing_backend_skips_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(INNER)
    result = run_inner(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*backend 'thing' unavailable: not installed here*"])


@pytest.mark.skipif(container_engine_available(), reason="a container engine provides Dragonfly")
def test_fixture_without_its_backend_goes_through_require_backend(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MARQUEE_TEST_DRAGONFLY_URL", raising=False)
    pytester.makepyfile("def test_dragonfly(dragonfly_url):\n    pass\n")
    monkeypatch.setenv("CI", "true")
    run_inner(pytester).assert_outcomes(errors=1)
    monkeypatch.delenv("CI")
    result = run_inner(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*MARQUEE_TEST_DRAGONFLY_URL is not set*"])
