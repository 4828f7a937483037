from __future__ import annotations

import pytest
from platform_echo_service import EchoSettings

from marquee_platform.settings import InvalidSettings, load_settings


def test_settings_come_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_ECHO_GRPC_PORT", "50123")
    monkeypatch.setenv("MARQUEE_ECHO_LOG_LEVEL", "debug")
    settings = load_settings(EchoSettings)
    assert settings.grpc_port == 50123
    assert settings.log_level == "DEBUG"
    assert settings.metrics_port == 0
    assert settings.profile == "dev"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARQUEE_ECHO_GRPC_PORT", "not-a-port"),
        ("MARQUEE_ECHO_LOG_LEVEL", "LOUD"),
        ("MARQUEE_ECHO_SHUTDOWN_GRACE_SECONDS", "0"),
        ("MARQUEE_ECHO_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as caught:
        load_settings(EchoSettings)
    message = str(caught.value)
    assert message.startswith(f"invalid setting {variable}: ")
    assert "\n" not in message
