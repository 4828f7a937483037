"""How commands show what they report: aligned text tables for people, JSON for scripts.

A command that cannot do its job raises `CommandError` (see `fail`); the app
renders it once, at the top (main.py): one `marquee: ...` line on stderr, or
with `--json` a JSON document on stdout, and a non-zero exit either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from marquee_cli.endpoints import Endpoints, ProcessEndpoint
from marquee_cli.names import CONTROL_CHARACTERS

if TYPE_CHECKING:  # control imports psutil and grpc, which only `status` should pay for
    from marquee_cli.control import ProcessStatus

EMPTY = "-"


class CommandError(Exception):
    """A failure to report to the user: `message` for people, `to_json()` for scripts.

    `details` are extra JSON fields (e.g. the gRPC status code) a script can act on.
    """

    def __init__(
        self, message: str, *, exit_code: int = 1, kind: str = "error", **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.kind = kind
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": {"kind": self.kind, "message": self.message, **self.details}}


def fail(message: str, **details: Any) -> CommandError:
    """Use as `raise fail(...)`: the error a command reports, exit code 1."""
    return CommandError(message, **details)


def command_group(help_text: str) -> typer.Typer:
    """A typer app for a group of commands, with plain (click) help and usage errors.

    Typer's rich rendering would import rich and markdown-it on every --help and
    usage error, 0.1-0.3 s: longer than the rest of the start-up.
    """
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


def report(error: CommandError, json_mode: bool) -> None:
    if json_mode:
        typer.echo(render_json(error.to_json()))
    else:
        typer.echo(f"marquee: {error.message}", err=True)


def negative(message: str) -> typer.Exit:
    """Use as `raise negative(...)` for a "no" that is an answer, not an error.

    Not found, not stored, not running: the command has printed its result (with
    --json, the document that says so), so only people are told why, on stderr.
    """
    typer.echo(f"marquee: {message}", err=True)
    return typer.Exit(1)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; None shows as "-".

    Control characters in a cell (a holder id another client chose, say) show as
    escapes: raw, they would break the columns or drive the terminal.
    """
    cells = [[str(h) for h in headers]] + [
        [EMPTY if value is None else _escaped(str(value)) for value in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def render_json(document: Any) -> str:
    """One line, so a script can read it with a single readline()."""
    return json.dumps(document, separators=(",", ":"))


def _escaped(text: str) -> str:
    return CONTROL_CHARACTERS.sub(lambda m: repr(m.group())[1:-1], text)


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


def status_tables(statuses: Sequence[ProcessStatus]) -> str:
    """One row per process, then one per service a process serves, each with its health;
    then, for each process `marquee up` had to restart, when and why."""
    processes = render_table(
        ("NAME", "ROLE", "PID", "ALIVE", "HEALTH", "RESTARTS", "ADDRESS"),
        [
            (
                s.endpoint.name,
                s.endpoint.role,
                s.endpoint.pid,
                "yes" if s.alive else "NO",
                s.health,
                s.endpoint.restarts,
                s.endpoint.grpc or s.endpoint.url,
            )
            for s in statuses
        ],
    )
    sections = [processes]
    services = [
        (service, s.endpoint.name, health)
        for s in statuses
        for service, health in sorted(s.services.items())
    ]
    if services:
        sections.append(render_table(("SERVICE", "PROCESS", "HEALTH"), services))
    restarted = [_restart_line(s.endpoint) for s in statuses if s.endpoint.restarts]
    if restarted:
        sections.append("\n".join(restarted))
    return "\n\n".join(sections)


def _restart_line(endpoint: ProcessEndpoint) -> str:
    times = "once" if endpoint.restarts == 1 else f"{endpoint.restarts} times"
    when = endpoint.last_restart_at
    at = f", last at {when.isoformat(timespec='seconds')}" if when else ""
    why = f" (last exit: {endpoint.last_exit})" if endpoint.last_exit else ""
    return f"{endpoint.name}: restarted {times}{at}{why}"


def grpcurl_lines(endpoints: Endpoints) -> str:
    return "\n".join(f"grpcurl -plaintext {p.grpc} list    # {p.name}" for p in endpoints.services)
