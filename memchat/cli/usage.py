"""`memchat stats`: where the tokens and the money went."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Optional

import typer

from memchat.cli.app import app, memory_of
from memchat.cli.options import JsonOpt
from memchat.cli.render import cost_text, print_json
from memchat.errors import InvalidInput
from memchat.terminal import terminal_safe


class Grouping(str, Enum):
    model = "model"
    day = "day"
    thread = "thread"


@app.command()
def stats(
    ctx: typer.Context,
    thread: Annotated[
        Optional[str], typer.Argument(help="Only this thread (default: every thread).", show_default=False)
    ] = None,
    by: Annotated[Optional[Grouping], typer.Option("--by", help="One row a model, a day (UTC) or a thread.")] = None,
    since: Annotated[
        Optional[str],
        typer.Option(
            "--since", metavar="DATE", help="From this day or moment on (2026-11-01, or ISO 8601; UTC unless given)."
        ),
    ] = None,
    as_json: JsonOpt = False,
):
    """Turns, tokens, cost and latency, with failed and cut-off turns; summary calls apart."""
    found = memory_of(ctx).stats(thread, by=by.value if by else None, since=_moment(since) if since else None)
    if as_json:
        print_json(found)
        return
    column = by.value if by else None
    for title, rows in (("turns", found["turns"]), ("summary calls", found["summaries"])):
        if not rows:
            continue
        if title != "turns":
            typer.echo("")
        typer.echo(f"{title}:")
        _table(rows, column, turns=title == "turns")
    if not found["turns"] and not found["summaries"]:
        typer.echo("no model calls yet" + (" in this span" if since else ""), err=True)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--since: {text!r} is not a date (2026-11-01) or an ISO 8601 moment") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _table(rows: list[dict], column: str | None, *, turns: bool) -> None:
    head = [column.upper() if column else "", "CALLS"] + (["FAILED", "PARTIAL"] if turns else [])
    head += ["PROMPT", "COMPLETION", "COST", "P50 MS", "P95 MS"]
    lines = [head]
    for row in rows:
        label = row.get(column, "all") if column else "all"
        if column == "thread" and row.get("title"):
            label = f"{label} {row['title']}"
        cells = [terminal_safe(label), f"{row['calls']:,}"]
        if turns:
            cells += [f"{row['failed']:,}", f"{row['partial']:,}"]
        cells += [
            f"{row['prompt_tokens']:,}",
            f"{row['completion_tokens']:,}",
            cost_text(row["cost"], row["unknown_cost"]),
        ]
        cells += [_number(row["latency_p50_ms"]), _number(row["latency_p95_ms"])]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        aligned = (
            cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(line, widths))
        )
        typer.echo("  ".join(aligned).rstrip())


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
