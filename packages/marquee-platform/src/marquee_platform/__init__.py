"""What every Marquee service is built on: run_service() in __main__, a registrar, errors."""

from marquee_platform import errors
from marquee_platform.context import Registrar, ServiceContext
from marquee_platform.server import ServerInfo, run_service, serve
from marquee_platform.settings import ServiceSettings

__all__ = [
    "Registrar",
    "ServerInfo",
    "ServiceContext",
    "ServiceSettings",
    "errors",
    "run_service",
    "serve",
]
