"""Object keys: relative slash-separated paths, checked before any backend sees them."""

from marquee_platform.errors import InvalidArgument

MAX_KEY_BYTES = 1024


def check_key(key: str, field: str = "key") -> str:
    """`key` if valid, else INVALID_ARGUMENT naming `field` and why."""
    problem = key_problem(key)
    if problem:
        raise InvalidArgument(f"invalid {field}: {problem}", [(field, problem)])
    return key


def key_problem(key: str) -> str | None:
    if not key:
        return "must not be empty"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"must be at most {MAX_KEY_BYTES} bytes"
    if key.startswith("/"):
        return "must not start with '/'"
    if any(ord(c) < 0x20 or c == "\x7f" or c == "\\" for c in key):
        return "must not contain control characters or backslashes"
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            return "must not contain empty, '.' or '..' segments"
        if segment.startswith(".mq-"):
            return "segments starting with '.mq-' are reserved"
    return None
