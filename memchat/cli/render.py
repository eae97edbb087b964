"""Rendering helpers shared by the commands."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import typer

from memchat.config import pager_environment, pager_from_environment
from memchat.storage.fulltext import highlights
from memchat.terminal import terminal_safe
from memchat.times import as_utc


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def local_time(moment: datetime) -> str:
    return as_utc(moment).astimezone().strftime("%Y-%m-%d %H:%M")


def cost_text(cost: float | None, unknown: int = 0) -> str:
    """A cost as every command prints it, by the rule the store sums it by (`priced`): the
    known prices summed, and the calls litellm had no price for said so, never counted as free
    (`$0.0170`, `$0.0170 +3 unknown`, `unknown`). Only a cost known to be nothing is `$0`. Under
    a hundredth of a cent, two significant digits (`$0.000015`)."""
    if cost is None:
        return "unknown" if unknown else "$0"
    if cost == 0:
        shown = "$0"
    elif cost >= 0.0001:
        shown = f"${cost:.4f}"
    else:
        shown = "$" + format(Decimal(f"{cost:.2g}"), "f")
    return shown + (f" +{unknown} unknown" if unknown else "")


def call_cost_text(cost: float | None) -> str:
    """The cost of one model call, by the same rule: `unknown` when litellm had no price."""
    return cost_text(cost, int(cost is None))


def note(text: str) -> None:
    """What memchat did on the user's behalf, as one line on stderr."""
    typer.echo(f"memchat: {terminal_safe(text)}", err=True)


def search_snippet(marked: str) -> str:
    """A search hit's snippet as one line to print, its matched words highlighted: the one
    rendering of `memchat search` and chat's /search. The store marks matches with control
    characters, which `terminal_safe` would show as escapes if they were printed; `typer.echo`
    drops the colour where none is wanted (output not a terminal, NO_COLOR)."""
    text, spans = highlights(marked.replace("\n", " "))
    pieces, at = [], 0
    for start, end in spans:
        pieces.append(terminal_safe(text[at:start]))
        pieces.append(typer.style(terminal_safe(text[start:end]), bold=True, fg="yellow"))
        at = end
    pieces.append(terminal_safe(text[at:]))
    return "".join(pieces)


def pager_command() -> str | None:
    """The pager, as git picks one: $MEMCHAT_PAGER, else $PAGER, else `less` if installed; an
    empty value or `cat` means none."""
    command = pager_from_environment()
    if command is not None:
        return command or None
    return "less" if shutil.which("less") else None


@contextmanager
def paged(ctx: typer.Context, enabled: bool = True) -> Iterator[None]:
    """What is printed inside goes through the pager when stdout is a terminal (as `git log`
    does); piped or redirected output is written as it is. `less` gets LESS=FRX unless the user
    set LESS: it quits when the text fits one screen, keeps colours, and leaves the text on the
    screen. Quitting the pager early stops the output quietly."""
    command = pager_command() if enabled else None
    if command is None or not sys.stdout.isatty():
        yield
        return
    pager = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=pager_environment())
    encoding = sys.stdout.encoding or "utf-8"
    into_pager = io.TextIOWrapper(pager.stdin, encoding=encoding, errors="replace", line_buffering=False)
    if ctx.color is None:
        ctx.color = True  # the terminal is behind the pager; NO_COLOR has already set False
    terminal, sys.stdout = sys.stdout, into_pager
    try:
        yield
        into_pager.flush()
    except BrokenPipeError:
        pass  # the reader quit the pager before the end
    finally:
        sys.stdout = terminal
        try:
            into_pager.close()
        except BrokenPipeError:
            pass
        while True:
            try:
                pager.wait()
                break
            except KeyboardInterrupt:
                continue  # Ctrl-C belongs to the pager while it runs, as with git
