"""Request checks: every problem of a request is reported at once as a field violation.

The limits come from the contract (at most 1000 keys per call) and from the
settings (key size). Durations are checked for protobuf validity too, since a
hand-built Duration can carry nanos of the wrong sign.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.duration_pb2 import Duration

from marquee.cache.v1 import cache_pb2
from marquee_platform import errors

MAX_KEYS = 1000
MAX_TTL_SECONDS = 10 * 365 * 86_400  # far beyond any cache use, well inside Redis' PX range
MAX_WINDOW_SECONDS = 366 * 86_400
MAX_LIMIT = 1_000_000_000  # keeps the limiter's microsecond arithmetic exact in Lua doubles

Violations = list[tuple[str, str]]


def check_key(field: str, key: str, max_key_bytes: int, violations: Violations) -> None:
    if not key:
        violations.append((field, "must not be empty"))
    elif len(key.encode()) > max_key_bytes:
        violations.append((field, f"must be at most {max_key_bytes} bytes"))


def check_keys(
    field: str, keys: Sequence[str], max_key_bytes: int, violations: Violations, *, min_keys: int
) -> None:
    if len(keys) < min_keys:
        violations.append((field, f"must name at least {min_keys} key"))
    if len(keys) > MAX_KEYS:
        violations.append((field, f"must name at most {MAX_KEYS} keys, got {len(keys)}"))
        return  # a thousand per-key violations would help nobody
    for i, key in enumerate(keys):
        check_key(f"{field}[{i}]", key, max_key_bytes, violations)


def seconds(duration: Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _check_duration(field: str, duration: Duration, violations: Violations) -> bool:
    """False (with a violation) for a Duration that protobuf itself calls invalid."""
    if abs(duration.nanos) >= 1_000_000_000 or (
        duration.seconds * duration.nanos < 0  # seconds and nanos of opposite signs
    ):
        violations.append((field, "is not a valid Duration"))
        return False
    return True


def raise_if(violations: Violations, what: str) -> None:
    if violations:
        summary = "; ".join(f"{field} {problem}" for field, problem in violations)
        raise errors.InvalidArgument(f"invalid {what}: {summary}", violations)


def check_get(request: cache_pb2.GetRequest, max_key_bytes: int) -> None:
    key = request.key
    # The common case, a valid key, without the violation list (Get runs the most).
    if key and len(key.encode()) <= max_key_bytes:
        return
    violations: Violations = []
    check_key("key", request.key, max_key_bytes, violations)
    raise_if(violations, "Get request")


def check_get_many(request: cache_pb2.GetManyRequest, max_key_bytes: int) -> None:
    violations: Violations = []
    check_keys("keys", request.keys, max_key_bytes, violations, min_keys=0)
    raise_if(violations, "GetMany request")


def check_set(request: cache_pb2.SetRequest, max_key_bytes: int) -> float | None:
    """The TTL in seconds, or None for no expiry (unset or zero)."""
    violations: Violations = []
    check_key("key", request.key, max_key_bytes, violations)
    ttl: float | None = None
    if request.HasField("ttl") and _check_duration("ttl", request.ttl, violations):
        ttl = seconds(request.ttl)
        if ttl < 0:
            violations.append(("ttl", "must not be negative"))
        elif ttl > MAX_TTL_SECONDS:
            violations.append(("ttl", f"must be at most {MAX_TTL_SECONDS} seconds"))
    if request.condition not in cache_pb2.SetCondition.values():
        violations.append(("condition", f"unknown value {request.condition}"))
    raise_if(violations, "Set request")
    return ttl or None


def check_delete(request: cache_pb2.DeleteRequest, max_key_bytes: int) -> None:
    violations: Violations = []
    check_keys("keys", request.keys, max_key_bytes, violations, min_keys=1)
    raise_if(violations, "Delete request")


def check_delete_by_prefix(request: cache_pb2.DeleteByPrefixRequest, max_key_bytes: int) -> None:
    violations: Violations = []
    check_key("prefix", request.prefix, max_key_bytes, violations)
    raise_if(violations, "DeleteByPrefix request")


def check_rate_limit(request: cache_pb2.RateLimitRequest, max_key_bytes: int) -> tuple[float, int]:
    """(window in seconds, cost) once the request is known to be valid."""
    violations: Violations = []
    check_key("key", request.key, max_key_bytes, violations)
    if not 0 < request.limit <= MAX_LIMIT:
        violations.append(("limit", f"must be between 1 and {MAX_LIMIT}"))
    window = 0.0
    if not request.HasField("window"):
        violations.append(("window", "is required"))
    elif _check_duration("window", request.window, violations):
        window = seconds(request.window)
        if not 0 < window <= MAX_WINDOW_SECONDS:
            violations.append(("window", f"must be positive and at most {MAX_WINDOW_SECONDS} s"))
    cost = request.cost or 1
    if cost < 0:
        violations.append(("cost", "must not be negative"))
    elif 0 < request.limit < cost:
        # GCRA could never admit it: an error says so instead of a permanent "denied".
        violations.append(("cost", "must not exceed limit"))
    raise_if(violations, "RateLimit request")
    return window, cost


def check_watch(request: cache_pb2.WatchInvalidationsRequest, max_key_bytes: int) -> None:
    violations: Violations = []
    if len(request.prefixes) > MAX_KEYS:
        violations.append(("prefixes", f"must name at most {MAX_KEYS} prefixes"))
    else:
        for i, prefix in enumerate(request.prefixes):
            check_key(f"prefixes[{i}]", prefix, max_key_bytes, violations)
    raise_if(violations, "WatchInvalidations request")
