"""JSON log lines from structlog and stdlib loggers alike, with trace ids inside spans."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from marquee_platform.logging import configure_logging


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Reads the JSON lines written since the last read; configure logging in the test itself.

    (Inside the test, because the handler keeps the sys.stderr pytest has in place then.)
    """
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    yield lines
    root.handlers, root.level = saved
    structlog.reset_defaults()


def test_structlog_lines_are_json_with_service_level_and_timestamp(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    configure_logging("logtest", "DEBUG", "json")
    structlog.stdlib.get_logger("t").info("something happened", key="value")
    [line] = json_logs()
    assert line["event"] == "something happened"
    assert line["service"] == "logtest"
    assert line["level"] == "info"
    assert line["key"] == "value"
    assert "timestamp" in line
    assert "trace_id" not in line


def test_stdlib_loggers_use_the_same_shape(json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    configure_logging("logtest", "DEBUG", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("third.party").exception("library failed: %s", "badly")
    [line] = json_logs()
    assert line["event"] == "library failed: badly"
    assert line["service"] == "logtest"
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


def test_lines_inside_a_span_carry_its_ids(json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    configure_logging("logtest", "DEBUG", "json")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        structlog.stdlib.get_logger("t").info("inside")
    [line] = json_logs()
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_level_filters_lines(json_logs: Callable[[], list[dict[str, Any]]]) -> None:
    configure_logging("logtest", "WARNING", "json")
    structlog.stdlib.get_logger("t").info("hidden")
    logging.getLogger("lib").info("hidden too")
    structlog.stdlib.get_logger("t").warning("shown")
    assert [line["event"] for line in json_logs()] == ["shown"]
