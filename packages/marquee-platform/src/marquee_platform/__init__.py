"""What every Marquee service is built on: run_service() in __main__, a registrar, errors.

The names below are imported when first used (PEP 562), so that importing
this package, or a light module of it, costs almost nothing: the coordinator
starts its Raft node before the server stack has loaded. The first thing the
package does is import structlog without the extras it has no use for
(`quiet_imports`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from marquee_platform.quiet_imports import import_structlog

import_structlog()

if TYPE_CHECKING:
    from marquee_platform import errors
    from marquee_platform.context import Registrar, ServiceContext
    from marquee_platform.server import ServerInfo, run_service, serve
    from marquee_platform.settings import ServiceSettings

_HOMES = {
    "Registrar": "marquee_platform.context",
    "ServiceContext": "marquee_platform.context",
    "ServerInfo": "marquee_platform.server",
    "run_service": "marquee_platform.server",
    "serve": "marquee_platform.server",
    "ServiceSettings": "marquee_platform.settings",
}

__all__ = [
    "Registrar",
    "ServerInfo",
    "ServiceContext",
    "ServiceSettings",
    "errors",
    "run_service",
    "serve",
]


def __getattr__(name: str) -> object:
    if name == "errors":
        return importlib.import_module("marquee_platform.errors")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'marquee_platform' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
