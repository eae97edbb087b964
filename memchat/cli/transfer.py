"""Export and import, and writing an output file as a user means it."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer

from memchat.cli.app import app, chosen_thread, memory_of
from memchat.cli.options import ContinueOpt
from memchat.config import import_limit_bytes
from memchat.errors import InvalidInput, StorageError
from memchat.transfer import ImportResult


class Format(str, Enum):
    json = "json"
    markdown = "markdown"


@app.command()
def export(
    ctx: typer.Context,
    thread: Annotated[
        Optional[str],
        typer.Argument(
            metavar="THREAD", help="Thread id (default: the most recent thread, named on stderr).", show_default=False
        ),
    ] = None,
    latest: ContinueOpt = False,
    all_threads: Annotated[bool, typer.Option("--all", help="Every thread, as a JSON array.")] = False,
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
    ] = None,
    form: Annotated[
        Format,
        typer.Option(
            "--format", help="json (messages as a ChatML list), or markdown (a transcript that imports back)."
        ),
    ] = Format.json,
):
    """Write a thread (without one: the most recent; or --all) as JSON, messages as a ChatML list, or as a
    Markdown transcript."""
    if all_threads and (thread is not None or latest):
        raise InvalidInput("give either a THREAD (or -c) or --all")
    if not all_threads:
        thread = chosen_thread(ctx, thread, latest or thread is None, doing="exporting")
    memory = memory_of(ctx)
    if output is None:
        memory.write_export(sys.stdout, thread, format=form.value)
    else:
        write_output(output, lambda out: memory.write_export(out, thread, format=form.value))


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


class Origin(str, Enum):
    json = "json"
    llm = "llm"
    chatgpt = "chatgpt"
    openai_jsonl = "openai-jsonl"


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[
        Optional[str],
        typer.Argument(
            metavar="FILE",
            help="An export (one thread or an array; `-` reads stdin), or the history --from names.",
            show_default=False,
        ),
    ] = None,
    origin: Annotated[
        Origin,
        typer.Option(
            "--from",
            help="What FILE holds: memchat's JSON, llm's logs database (default: llm's own), a ChatGPT "
            'data export (the .zip, its folder or a conversations file), or OpenAI JSONL ({"messages": [...]} a line).',
        ),
    ] = Origin.json,
    form: Annotated[
        Optional[Format],
        typer.Option(
            "--format",
            help="memchat's own format FILE is in: json, or markdown (from export --format markdown). "
            "Default: told from FILE (Markdown by its first line or a .md name).",
            show_default=False,
        ),
    ] = None,
):
    """Create new threads from an export or another tool's history, all or none: prints the ids
    made; says on stderr what was imported before (not copied again) and what was left out."""
    if form is Format.markdown and origin is not Origin.json:
        raise InvalidInput(
            f"import: --format markdown reads memchat's own Markdown; --from {origin.value} reads another tool's history"
        )
    if origin is Origin.llm:
        from memchat.transfer import llm_logs

        history = llm_logs.read(source)
    elif source is None:
        raise InvalidInput(f"import --from {origin.value}: give the FILE to read")
    elif origin is Origin.chatgpt:
        from memchat.transfer import chatgpt

        history = chatgpt.read(source)
    elif origin is Origin.openai_jsonl:
        from memchat.transfer import openai_jsonl

        history = openai_jsonl.read(source)
    else:
        history = None
    if history is None:
        raw = _read_export(source)
        if (form or _own_format(raw, source)) is Format.markdown:
            from memchat.transfer import markdown

            result = memory_of(ctx).import_(markdown.parse(raw))
        else:
            result = memory_of(ctx).import_(raw)
    else:
        memory = memory_of(ctx)
        for note in history.notes:
            typer.echo(f"import: {note}", err=True)
        result = memory.import_(history.threads) if history.threads else ImportResult([], [])
    for thread_id in result.threads:
        typer.echo(thread_id)
    for source_id, thread_id in result.existing:
        typer.echo(f"import: {source_id} was imported before, as thread {thread_id}: left as it is", err=True)
    for thread_id, origin in result.unlinked:
        typer.echo(
            f"import: thread {thread_id} names {origin!r} as the thread it was forked from, which is no thread here: "
            "imported as a thread of its own",
            err=True,
        )


def _own_format(raw: bytes, source: str) -> Format:
    """Which of memchat's own exports `raw` is, when --format does not say; for anything else,
    InvalidInput naming the formats there are."""
    from memchat.transfer.markdown import is_markdown_export

    if is_markdown_export(raw, None if source == "-" else source):
        return Format.markdown
    begins = raw.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if begins in (b"{", b"["):
        return Format.json  # what is wrong with it, if anything, the JSON reader says
    shown = "the input" if source == "-" else source
    if not begins:
        raise InvalidInput(f"import: {shown} is empty; nothing was imported")
    raise InvalidInput(
        f"import: {shown} is neither of memchat's exports (JSON, Markdown); the formats: "
        f"--format {'|'.join(f.value for f in Format)} (memchat's own), "
        f"--from {'|'.join(o.value for o in Origin if o is not Origin.json)} (another tool's history); "
        "nothing was imported"
    )


def _read_export(source: str) -> bytes:
    limit = import_limit_bytes()
    try:
        if source == "-":
            stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
            return stream.read(limit + 1) if stream else sys.stdin.read(limit + 1).encode()
        with open(source, "rb") as handle:
            return handle.read(limit + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror}") from None
