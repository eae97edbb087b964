"""Export and import, and writing an output file as a user means it."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer

from memchat.cli.app import app, memory_of
from memchat.config import import_limit_bytes
from memchat.errors import InvalidInput, StorageError


@app.command()
def export(
    ctx: typer.Context,
    thread: Annotated[Optional[str], typer.Argument(help="Thread id.", show_default=False)] = None,
    all_threads: Annotated[bool, typer.Option("--all", help="Every thread, as a JSON array.")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
):
    """Write a thread (or --all) as JSON, messages as a ChatML list."""
    if (thread is None) == (not all_threads):
        raise InvalidInput("give either a THREAD or --all")
    memory = memory_of(ctx)
    if output is None:
        memory.write_export(sys.stdout, thread)
    else:
        write_output(output, lambda out: memory.write_export(out, thread))


def write_output(name: str, write: Callable[[TextIO], None]) -> None:
    """Write to the file `name` as a user means it: a regular file (new or existing) appears
    complete or not at all and keeps its mode (a new one is private, 0600); a device or FIFO is
    written through, never replaced; a symlink is followed to what it points at."""
    if not name:
        raise InvalidInput("--output needs a file name")
    target = Path(os.path.realpath(name))
    try:
        found = os.stat(target)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise InvalidInput(f"cannot write {name}: {exc.strerror}") from None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise InvalidInput(f"cannot write {name}: it is a directory")
    try:
        if found is not None and not stat.S_ISREG(found.st_mode):
            with open(target, "w", encoding="utf-8") as out:
                write(out)
        else:
            _replace_atomically(target, write, mode=stat.S_IMODE(found.st_mode) if found else None)
    except OSError as exc:
        raise StorageError(f"cannot write {name}: {exc.strerror or exc}") from None


def _replace_atomically(path: Path, write: Callable[[TextIO], None], *, mode: int | None) -> None:
    try:
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            if mode is not None:
                os.chmod(handle.name, mode)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="FILE", help="An export (one thread or an array); `-` reads stdin.")],
):
    """Create new threads from an export, all or none, and print their ids."""
    limit = import_limit_bytes()
    try:
        if source == "-":
            stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
            raw = stream.read(limit + 1) if stream else sys.stdin.read(limit + 1).encode()
        else:
            with open(source, "rb") as handle:
                raw = handle.read(limit + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror}") from None
    for thread_id in memory_of(ctx).import_(raw):
        typer.echo(thread_id)
