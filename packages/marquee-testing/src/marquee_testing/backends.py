"""How a fixture obtains a backend: an env URL, a container, or a local server process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import NoReturn

import pytest

from marquee_testing.endpoints import Endpoint, ServerEndpoint
from marquee_testing.fixtures.containers import container_engine_available


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_backend(name: str, reason: str) -> NoReturn:
    """Give up on a missing backend: skip locally, but FAIL in CI, where all must exist."""
    message = f"backend {name!r} unavailable: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


Source = Callable[[], AbstractContextManager[ServerEndpoint]]


def provide_backend(
    name: str,
    env_var: str,
    default_port: int,
    *,
    container: Source | None = None,
    local: Source | None = None,
) -> Iterator[ServerEndpoint]:
    """Yield the first backend that works: `env_var`'s URL, else a container, else a local process.

    Whatever was started is stopped when the generator is closed; if nothing works
    the fixture goes through require_backend with every reason collected.
    """
    url = os.environ.get(env_var)
    if url:
        yield Endpoint.from_url(url, default_port)
        return
    reasons = [f"{env_var} is not set"]
    sources: list[tuple[str, Source]] = []
    if container is not None:
        if container_engine_available():
            sources.append(("container", container))
        else:
            reasons.append("no container engine answers")
    if local is not None:
        sources.append(("local server", local))
    with contextlib.ExitStack() as stack:
        for label, source in sources:
            try:
                endpoint = stack.enter_context(source())
            except Exception as exc:  # any failure just means: try the next source
                reasons.append(f"{label}: {exc}")
                continue
            yield endpoint
            return
    require_backend(name, "; ".join(reasons))
