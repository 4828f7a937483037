"""Fencing: a write carries its lease's token, and a token below the highest seen is refused.

A lease holder can be paused or partitioned past its TTL while another runner
takes over with a higher token; its late writes must not land. Call
`fenced_write` first inside the transaction that does the work: it moves the
resource's highest token up (or keeps it) and row-locks it until commit, so a
stale holder can neither pass the check nor interleave with the current one.
"""

from __future__ import annotations

from marquee_jobs.db import Connection


class StaleToken(Exception):
    def __init__(self, resource: str, token: int, highest: int | None) -> None:
        self.resource = resource
        self.token = token
        self.highest = highest
        super().__init__(
            f"write to {resource!r} with fencing token {token} refused: token {highest} seen"
        )


async def fenced_write(conn: Connection, resource: str, token: int) -> None:
    """Admit this transaction's writes to `resource` under `token`, or raise StaleToken."""
    if not conn.is_in_transaction():
        # Outside a transaction the row lock ends at once and the check guards nothing.
        raise RuntimeError("fenced_write must run inside the transaction that does the writes")
    admitted = await conn.fetchval(
        """INSERT INTO marquee_fencing (resource, token) VALUES ($1, $2)
        ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
            WHERE marquee_fencing.token <= EXCLUDED.token
        RETURNING token""",
        resource,
        token,
    )
    if admitted is None:
        highest = await conn.fetchval(
            "SELECT token FROM marquee_fencing WHERE resource = $1", resource
        )
        raise StaleToken(resource, token, highest)
