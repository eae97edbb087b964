"""Rendering helpers shared by the commands."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer

from memchat.storage.models import as_utc
from memchat.terminal import terminal_safe


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def local_time(moment: datetime) -> str:
    return as_utc(moment).astimezone().strftime("%Y-%m-%d %H:%M")


def note(text: str) -> None:
    """What memchat did on the user's behalf, as one line on stderr."""
    typer.echo(f"memchat: {terminal_safe(text)}", err=True)
