"""Input checks for the account RPCs: every problem becomes one field violation."""

from __future__ import annotations

import re
import unicodedata

from marquee_platform.errors import InvalidArgument

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 254
MAX_TOKEN_CHARS = 512


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


class Violations:
    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, field: str, problem: str) -> None:
        self.found.append((field, problem))

    def raise_if_any(self) -> None:
        if self.found:
            summary = "; ".join(f"{field}: {problem}" for field, problem in self.found)
            raise InvalidArgument(f"invalid argument: {summary}", self.found)


def check_new_account(
    v: Violations, username: str, email: str, password: str, display_name: str, min_password: int
) -> None:
    if not _USERNAME.fullmatch(username):
        v.add(
            "username",
            "3 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(email) > MAX_NAME_CHARS
        or any(ch.isspace() for ch in email)
        or _has_control(email)
    ):
        v.add("email", "must be an email address such as name@example.com")
    check_password(v, "password", password, min_password)
    if len(display_name) > 128 or _has_control(display_name):
        v.add("display_name", "at most 128 characters, no control characters")


def check_password(v: Violations, field: str, password: str, min_chars: int) -> None:
    if len(password) < min_chars:
        v.add(field, f"must be at least {min_chars} characters")
    elif len(password) > MAX_PASSWORD_CHARS:
        v.add(field, f"must be at most {MAX_PASSWORD_CHARS} characters")


def check_login(v: Violations, username: str, password: str) -> None:
    if not username:
        v.add("username", "required (a username or an email)")
    elif len(username) > MAX_NAME_CHARS or _has_control(username):
        v.add("username", f"at most {MAX_NAME_CHARS} characters, no control characters")
    if not password:
        v.add("password", "required")
    elif len(password) > MAX_PASSWORD_CHARS:
        v.add("password", f"must be at most {MAX_PASSWORD_CHARS} characters")


def check_token(v: Violations, field: str, token: str, *, required: bool = True) -> None:
    if not token:
        if required:
            v.add(field, "required")
    elif len(token) > MAX_TOKEN_CHARS or not token.isascii() or _has_control(token):
        v.add(field, "not a token this service issued")
