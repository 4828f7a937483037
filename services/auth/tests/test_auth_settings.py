"""Auth's settings: coordinator endpoints from a comma-separated list, and when jobs run."""

from __future__ import annotations

import pytest

from marquee_auth.settings import AuthSettings
from marquee_platform.settings import InvalidSettings, load_settings


def test_without_coordinator_endpoints_jobs_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARQUEE_AUTH_COORDINATOR_ENDPOINTS", raising=False)
    monkeypatch.delenv("MARQUEE_AUTH_JOBS_ENABLED", raising=False)
    settings = load_settings(AuthSettings)
    assert settings.coordinator_endpoints == []
    assert not settings.run_jobs


def test_endpoints_are_split_and_turn_jobs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_AUTH_COORDINATOR_ENDPOINTS", "127.0.0.1:1, 127.0.0.1:2,")
    monkeypatch.delenv("MARQUEE_AUTH_JOBS_ENABLED", raising=False)
    settings = load_settings(AuthSettings)
    assert settings.coordinator_endpoints == ["127.0.0.1:1", "127.0.0.1:2"]
    assert settings.run_jobs


def test_jobs_can_be_switched_off_with_a_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_AUTH_COORDINATOR_ENDPOINTS", "127.0.0.1:1")
    monkeypatch.setenv("MARQUEE_AUTH_JOBS_ENABLED", "false")
    assert not load_settings(AuthSettings).run_jobs


def test_jobs_without_a_coordinator_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARQUEE_AUTH_COORDINATOR_ENDPOINTS", raising=False)
    monkeypatch.setenv("MARQUEE_AUTH_JOBS_ENABLED", "true")
    with pytest.raises(InvalidSettings, match="jobs_enabled needs coordinator_endpoints"):
        load_settings(AuthSettings)


def test_outside_dev_a_missing_encryption_key_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MARQUEE_AUTH_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("MARQUEE_AUTH_PROFILE", "prod")
    with pytest.raises(InvalidSettings) as raised:
        load_settings(AuthSettings)
    message = str(raised.value)
    assert "MARQUEE_AUTH_ENCRYPTION_KEY is required outside the dev profile" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "problem"),
    [("not base64!", "not valid base64"), ("c2hvcnQ=", "must decode to 32 bytes, not 5")],
)
def test_a_malformed_encryption_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    monkeypatch.setenv("MARQUEE_AUTH_ENCRYPTION_KEY", key)
    with pytest.raises(InvalidSettings, match="MARQUEE_AUTH_ENCRYPTION_KEY") as raised:
        load_settings(AuthSettings)
    assert problem in str(raised.value)
