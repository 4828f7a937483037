"""Auth's pool releases a connection without asyncpg's reset query; this is why it may."""

from __future__ import annotations

import re
from pathlib import Path

import marquee_auth

SOURCES = sorted(Path(marquee_auth.__file__).parent.rglob("*.py"))

# What would outlive a transaction on a pooled connection, which asyncpg's reset
# query (skipped by marquee_auth.db.create_pool) would otherwise clear.
SESSION_STATE = {
    "a session-level advisory lock": re.compile(r"pg_(try_)?advisory_lock(_shared)?\s*\(", re.I),
    "LISTEN": re.compile(r"""["']\s*LISTEN\b""", re.I),
    # A statement of its own, first argument of a call: not the SET of an UPDATE.
    "a session variable": re.compile(r"""\(\s*["']\s*SET\s+(?!LOCAL\b)""", re.I),
    "set_config outside a transaction": re.compile(r"set_config\s*\([^)]*false", re.I),
    "a cursor held open": re.compile(r"""["']\s*DECLARE\b[^"']*\bWITH\s+HOLD""", re.I),
    "a temporary table": re.compile(
        r"CREATE\s+TEMP(ORARY)?\s+TABLE(?![^\"']*ON\s+COMMIT\s+DROP)", re.I
    ),
}


def test_no_auth_query_leaves_session_state_on_a_pooled_connection() -> None:
    assert SOURCES, "the auth sources were found"
    found = [
        f"{path.name}: {what}"
        for path in SOURCES
        for what, pattern in SESSION_STATE.items()
        if pattern.search(path.read_text())
    ]
    assert found == [], "give create_pool a reset that clears this, or keep it off the pool"


def test_the_checks_catch_what_they_look_for() -> None:
    samples = {
        "a session-level advisory lock": 'conn.execute("SELECT pg_advisory_lock($1)", k)',
        "LISTEN": "conn.execute('LISTEN changes')",
        "a session variable": 'conn.execute("SET statement_timeout = 5")',
        "set_config outside a transaction": "\"SELECT set_config('x', '1', false)\"",
        "a cursor held open": '"DECLARE c CURSOR WITH HOLD FOR SELECT 1"',
        "a temporary table": '"CREATE TEMP TABLE t (x int)"',
    }
    for what, sample in samples.items():
        assert SESSION_STATE[what].search(sample), what
    harmless = [
        '"SELECT pg_advisory_xact_lock($1)"',
        'conn.execute("SET LOCAL statement_timeout = 5")',
        'conn.execute("UPDATE auth_users SET failed_logins = 0")',
        'execute(\n  "INSERT INTO t VALUES ($1) ON CONFLICT (k) DO UPDATE"\n'
        '  " SET v = excluded.v",',
    ]
    for sample in harmless:
        assert not any(p.search(sample) for p in SESSION_STATE.values()), sample
