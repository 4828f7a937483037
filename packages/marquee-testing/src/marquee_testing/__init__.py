"""Test support for Marquee: the pytest plugin lives in marquee_testing.plugin."""

from marquee_testing.backends import in_ci, require_backend
from marquee_testing.endpoints import Endpoint, ServerEndpoint

__all__ = ["Endpoint", "ServerEndpoint", "in_ci", "require_backend"]
