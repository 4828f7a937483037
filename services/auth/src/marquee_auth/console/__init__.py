"""The dev console: a page on loopback to try auth by hand (dev profile only)."""

from marquee_auth.console.server import start_console

__all__ = ["start_console"]
