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


def test_grpc_message_limits_and_the_port_file_are_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = load_settings(EchoSettings)
    assert defaults.grpc_max_receive_message_bytes == 4 * 1024 * 1024  # grpc's own default
    assert defaults.grpc_max_send_message_bytes == -1  # no limit, as in grpc
    assert defaults.port_file is None
    monkeypatch.setenv("MARQUEE_ECHO_GRPC_MAX_RECEIVE_MESSAGE_BYTES", "1048576")
    monkeypatch.setenv("MARQUEE_ECHO_GRPC_MAX_SEND_MESSAGE_BYTES", "2097152")
    monkeypatch.setenv("MARQUEE_ECHO_PORT_FILE", "/run/echo/grpc.port")
    settings = load_settings(EchoSettings)
    assert settings.grpc_max_receive_message_bytes == 1048576
    assert settings.grpc_max_send_message_bytes == 2097152
    assert str(settings.port_file) == "/run/echo/grpc.port"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARQUEE_ECHO_GRPC_PORT", "not-a-port"),
        ("MARQUEE_ECHO_LOG_LEVEL", "LOUD"),
        ("MARQUEE_ECHO_SHUTDOWN_GRACE_SECONDS", "0"),
        ("MARQUEE_ECHO_LOG_FORMAT", "xml"),
        ("MARQUEE_ECHO_GRPC_MAX_RECEIVE_MESSAGE_BYTES", "0"),
        ("MARQUEE_ECHO_GRPC_MAX_RECEIVE_MESSAGE_BYTES", "4MB"),
        ("MARQUEE_ECHO_GRPC_MAX_SEND_MESSAGE_BYTES", "-2"),
        ("MARQUEE_ECHO_GRPC_MAX_SEND_MESSAGE_BYTES", str(2**31)),
        ("MARQUEE_ECHO_PORT_FILE", ""),
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
