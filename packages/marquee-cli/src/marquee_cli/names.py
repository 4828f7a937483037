"""Checks on the names people type (lease names, holders, cache keys), before any call.

A control character in a name is nearly always a mistake (a pasted newline, an
escape sequence) and makes the name unreadable wherever it is shown later, in
tables, logs and error messages; so these are refused as typer parameter errors,
naming the offending characters.
"""

from __future__ import annotations

import re

import typer

# Unicode category Cc: C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F).
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")
# The same, less tab and line breaks: what text may hold and still be printed as is.
TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_characters(value: str) -> list[str]:
    """The distinct control characters in `value`, as escapes such as '\\n' or '\\x1b'."""
    return sorted({repr(match)[1:-1] for match in CONTROL_CHARACTERS.findall(value)})


def _check(value: str) -> str:
    try:
        # Bytes that are not UTF-8 reach argv as lone surrogates, which no protobuf
        # string can carry.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise typer.BadParameter(f"{value!r} is not valid UTF-8") from None
    found = control_characters(value)
    if found:
        raise typer.BadParameter(f"{value!r} contains control characters ({', '.join(found)})")
    return value


def printable(value: str) -> str:
    """A typer callback: `value` unchanged, or a parameter error if it has control characters."""
    return _check(value)


def printable_each(values: list[str]) -> list[str]:
    """`printable` for a list argument."""
    for value in values:
        _check(value)
    return values


def within_bytes(value: str, limit: int, what: str) -> str:
    """`value` if it is non-empty and at most `limit` bytes as UTF-8 (the server's unit)."""
    _check(value)
    if not value:
        raise typer.BadParameter(f"{what} must not be empty")
    size = len(value.encode())
    if size > limit:
        raise typer.BadParameter(f"{what} is {size} bytes; the server allows at most {limit}")
    return value
