"""Start-up imports: what a service process loads before it serves, and what it leaves out.

Each case runs a fresh interpreter, since what matters is the state of
sys.modules from the first import on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from marquee_platform.quiet_imports import rich_wanted

TIMEOUT_S = 60


def run_python(code: str, env: dict[str, str] | None = None, **kwargs: object) -> dict[str, object]:
    """Run `code` in a new interpreter; it prints one JSON object, returned here."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=kwargs.pop("stderr", subprocess.PIPE),
        text=True,
        timeout=TIMEOUT_S,
        check=True,
        **kwargs,  # type: ignore[call-overload]
    )
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


LOADED = """
import json, sys
{imports}
print(json.dumps({{name: name in sys.modules for name in {names!r}}}))
"""


def test_the_package_loads_structlog_without_rich_and_rich_still_imports_later() -> None:
    code = """
import json, sys
import marquee_platform
import structlog.dev
loaded = {"rich": "rich" in sys.modules, "server": "marquee_platform.server" in sys.modules}
import rich
print(json.dumps({**loaded, "plain": structlog.dev.rich is None, "later": rich.__name__}))
"""
    assert run_python(code) == {
        "rich": False,
        # The server stack loads on first use of its names, not with the package.
        "server": False,
        "plain": True,  # structlog took its "rich is not installed" path
        "later": "rich",  # and rich imports normally afterwards
    }


def test_the_lazy_names_resolve_to_their_modules() -> None:
    import marquee_platform
    from marquee_platform import context, errors, server, settings

    assert marquee_platform.run_service is server.run_service
    assert marquee_platform.ServiceContext is context.ServiceContext
    assert marquee_platform.ServiceSettings is settings.ServiceSettings
    assert marquee_platform.errors is errors
    assert sorted(marquee_platform.__all__) == sorted(
        [
            "Registrar",
            "ServerInfo",
            "ServiceContext",
            "ServiceSettings",
            "errors",
            "run_service",
            "serve",
        ]
    )


def test_a_service_entry_loads_neither_rich_click_nor_the_otlp_exporter() -> None:
    code = LOADED.format(
        imports=(
            "from marquee_platform.quiet_imports import extras_hidden\n"
            "with extras_hidden():\n"
            "    import httpx\n"
            "    from marquee_platform import run_service\n"
            "from marquee_platform.tracing import configure_tracing\n"
            "configure_tracing('t', None)"
        ),
        names=[
            "rich",
            "click",
            "pygments",
            "structlog",
            "httpx",
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        ],
    )
    assert run_python(code) == {
        "rich": False,
        "click": False,
        "pygments": False,
        "structlog": True,
        "httpx": True,
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter": False,
    }


def test_an_otlp_endpoint_loads_the_exporter() -> None:
    code = LOADED.format(
        imports=(
            "from marquee_platform.tracing import configure_tracing\n"
            "configure_tracing('t', 'http://127.0.0.1:4317')"
        ),
        names=["opentelemetry.exporter.otlp.proto.grpc.trace_exporter"],
    )
    assert run_python(code) == {"opentelemetry.exporter.otlp.proto.grpc.trace_exporter": True}


def test_console_logs_on_a_terminal_keep_rich() -> None:
    main, other = os.openpty()
    try:
        code = LOADED.format(imports="import marquee_platform", names=["rich"])
        console = {"MARQUEE_X_LOG_FORMAT": "console"}
        assert run_python(code, console, stderr=other) == {"rich": True}
        # The same settings with stderr not a terminal, and JSON logs on one: no rich.
        assert run_python(code, console) == {"rich": False}
        assert run_python(code, {"MARQUEE_X_LOG_FORMAT": "json"}, stderr=other) == {"rich": False}
    finally:
        os.close(main)
        os.close(other)


def test_rich_wanted_only_for_the_console_format() -> None:
    assert not rich_wanted({"MARQUEE_AUTH_LOG_FORMAT": "json"})
    assert not rich_wanted({})


def test_service_modules_load_without_collections_then_are_collected_once_and_frozen() -> None:
    code = """
import gc, json
from marquee_platform.quiet_imports import service_modules_loading
stops = []
gc.callbacks.append(lambda phase, info: stops.append(info["generation"]) if phase == "stop" else 0)
with service_modules_loading():
    inside = gc.isenabled()
    import grpc, pydantic
    from marquee_platform import run_service
    during = len(stops)
first_after = stops[during]
after = gc.isenabled()
frozen = gc.get_freeze_count()
try:
    with service_modules_loading():
        raise ValueError("a failed import")
except ValueError:
    pass
print(json.dumps({"inside": inside, "during": during, "first_after": first_after,
                  "after": after, "frozen": frozen > 10_000, "after_failure": gc.isenabled()}))
"""
    assert run_python(code) == {
        "inside": False,
        "during": 0,  # no collection while the modules loaded
        "first_after": 2,  # then one full collection
        "after": True,
        "frozen": True,  # and what they built is frozen
        "after_failure": True,  # a block that raised leaves the collector on too
    }
