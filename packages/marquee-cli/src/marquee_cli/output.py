"""How commands show what they report: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from marquee_cli.endpoints import Endpoints

EMPTY = "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; None shows as "-"."""
    cells = [[str(h) for h in headers]] + [
        [EMPTY if value is None else str(value) for value in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def render_json(document: Any) -> str:
    """One line, so a script can read it with a single readline()."""
    return json.dumps(document, separators=(",", ":"))


def endpoints_table(endpoints: Endpoints) -> str:
    rows = [
        (
            p.name,
            p.role,
            p.pid,
            p.grpc,
            f"http://{p.metrics}/metrics" if p.metrics else p.url,
        )
        for p in endpoints.processes
    ]
    return render_table(("NAME", "ROLE", "PID", "GRPC", "METRICS / URL"), rows)


def grpcurl_lines(endpoints: Endpoints) -> str:
    return "\n".join(f"grpcurl -plaintext {p.grpc} list    # {p.name}" for p in endpoints.services)
