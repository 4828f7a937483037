"""The library's typed errors: callers tell "Redis is unreachable" from "your request is wrong"."""


class CacheError(Exception):
    """Base of every error this library raises."""


class CacheUnavailable(CacheError):
    """Redis cannot answer now (down, too slow, or the circuit breaker is open).

    Raised fast instead of serving L1 data that can no longer be known fresh;
    the gateway maps it to gRPC UNAVAILABLE.
    """


class CacheCommandError(CacheError):
    """Redis answered with an error (e.g. WRONGTYPE): the request, not the server, is at fault."""
