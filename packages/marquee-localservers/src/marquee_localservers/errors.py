"""Errors raised when a local server cannot be provided."""


class BackendUnavailable(RuntimeError):
    """The server's binaries are missing and cannot be installed here; the message says why."""


class ServerStartError(RuntimeError):
    """The server was spawned but did not come up; the message carries its log tail."""
