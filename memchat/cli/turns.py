"""Turns: say, retry, accept a cut-off reply, and preview what the next turn sends."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from memchat.cli.app import app, chosen_thread, holds_no_threads_yet, memory_of
from memchat.cli.attachments import user_message
from memchat.cli.options import JsonOpt, OptionalThreadArg, StreamOpt, ThreadArg, with_turn_options
from memchat.cli.render import call_cost_text, note, print_json
from memchat.context import Context, ContextEntry
from memchat.errors import InvalidInput, NotFound
from memchat.terminal import terminal_safe
from memchat.views import context_json, thread_json

if TYPE_CHECKING:
    from memchat.records import MessageCreate
    from memchat.schemas import TurnOptions
    from memchat.turn import Reply


@app.command()
@with_turn_options()
def say(
    ctx: typer.Context,
    thread: Annotated[
        Optional[str],
        typer.Argument(
            metavar="THREAD",
            help="Thread id (or a unique prefix of it); with --continue, leave it out.",
            show_default=False,
        ),
    ] = None,
    message: Annotated[
        Optional[str],
        typer.Argument(
            metavar="MESSAGE",
            help="The message. Text piped on stdin comes first, then MESSAGE after a blank line; `-` reads stdin "
            "alone. A message starting with `-` goes after `--`: memchat say T -- '-1 is negative'.",
            show_default=False,
        ),
    ] = None,
    *,
    options: TurnOptions,
    stream: StreamOpt = None,
    continue_: Annotated[
        bool,
        typer.Option(
            "--continue", "-c", help="Continue the thread with the most recent activity (as `llm -c`), named on stderr."
        ),
    ] = False,
    usage: Annotated[bool, typer.Option("--usage", "-u", help="Print the turn's tokens and cost on stderr.")] = False,
    images: Annotated[
        Optional[list[str]],
        typer.Option(
            "--image",
            metavar="PATH|URL",
            help="Attach an image (PNG, JPEG, GIF or WEBP file, or an http(s) URL) to the message; repeatable.",
            show_default=False,
        ),
    ] = None,
    files: Annotated[
        Optional[list[str]],
        typer.Option("--file", metavar="PATH", help="Attach a file (a PDF, a text...) to the message; repeatable."),
    ] = None,
):
    """Send a message with the thread's memory and print the reply."""
    if continue_:
        if message is not None:
            raise InvalidInput("with --continue give the message alone: memchat say -c MESSAGE")
        thread, message = None, thread
    elif thread is None:
        raise InvalidInput("no thread: give its id, or --continue for the most recent one (`memchat new` starts one)")
    text = _message_text(message)
    if text is None and not images and not files:
        _refuse_without_message(ctx, thread)
    said = ()
    if images or files:
        said, text = (user_message(text, images or (), files or ()),), None
    thread = chosen_thread(ctx, thread, continue_, doing="continuing")
    _turn(ctx, thread, text, options, stream, usage=usage, items=said)


def _refuse_without_message(ctx: typer.Context, thread: str | None) -> NoReturn:
    """No message anywhere. When the one argument given names no thread, it was meant as the
    message (`memchat say "hello there"`): say that no thread is named, and how to get one."""
    if thread is not None:
        if holds_no_threads_yet(ctx):
            raise NotFound(_no_thread_named(thread))
        try:
            memory_of(ctx).thread(thread)
        except NotFound:
            raise NotFound(_no_thread_named(thread)) from None
    raise InvalidInput("no message: give it as an argument, or pipe it on stdin")


def _no_thread_named(text: str) -> str:
    return (
        f"no thread named: {text!r} is no thread id. Start a thread with `memchat new` or `memchat chat`, "
        f"or continue the most recent one: memchat say -c {shlex.quote(text)}"
    )


@app.command()
@with_turn_options()
def retry(ctx: typer.Context, thread: ThreadArg, *, options: TurnOptions, stream: StreamOpt = None):
    """Send the thread's last unanswered message again (after a failed or cut-off reply)."""
    _turn(ctx, thread, None, options, stream)


@app.command()
def accept(ctx: typer.Context, thread: ThreadArg):
    """Keep a cut-off last reply as if complete, so later turns send it as history."""
    kept = memory_of(ctx).accept(thread)
    note(f"kept the cut-off reply #{kept.position} of thread {kept.thread_id} as complete; later turns send it")


@app.command()
def fork(
    ctx: typer.Context,
    thread: ThreadArg,
    at: Annotated[
        Optional[int], typer.Option("--at", min=-1, help="The last message copied (#N of show); -1: none.")
    ] = None,
    as_json: JsonOpt = False,
):
    """A new thread with this one's history up to message N (default: all) and its settings; prints its id."""
    made = memory_of(ctx).fork(thread, at=at)
    if as_json:
        print_json(thread_json(made, None))
        return
    typer.echo(made.id)
    note(f"forked thread {made.forked_from} at #{made.forked_at} into {made.id}")


@app.command()
@with_turn_options()
def edit(
    ctx: typer.Context,
    thread: ThreadArg,
    position: Annotated[int, typer.Argument(metavar="N", help="The user message to ask again (#N of show).")],
    message: Annotated[str, typer.Argument(help="The new text.")],
    *,
    options: TurnOptions,
    stream: StreamOpt = None,
):
    """Ask user message N again, differently: a fork just before it where MESSAGE is said (prints the reply)."""
    memory = memory_of(ctx)
    _turn(
        ctx,
        thread,
        message,
        options,
        stream,
        speak=lambda thread, text, *rest, **kw: memory.edit(thread, position, text, *rest, **kw),
    )


@app.command()
def undo(
    ctx: typer.Context,
    thread: OptionalThreadArg = None,
    latest: Annotated[
        bool,
        typer.Option(
            "--continue",
            "-c",
            help="Undo in the thread with the most recent activity, named on stderr (a THREAD or -c is required).",
        ),
    ] = False,
    as_json: JsonOpt = False,
):
    """Take the last turn out of the thread's memory (kept, marked undone; again: the one before).
    It changes the thread, so it never picks one by itself: name it, or give -c for the most recent."""
    thread = chosen_thread(ctx, thread, latest, doing="undoing the last turn of")  # before the database is opened
    taken = memory_of(ctx).undo(thread)
    if as_json:
        print_json([message.model_dump(mode="json") for message in taken])
        return
    positions = ", ".join(f"#{message.position}" for message in taken)
    note(f"undid the last turn of thread {taken[0].thread_id} ({positions}): kept, and left out of later turns")


def _turn(
    ctx: typer.Context,
    thread: str,
    text: str | None,
    options: TurnOptions,
    stream: bool | None,
    speak: Callable[..., Reply] | None = None,
    *,
    usage: bool = False,
    items: tuple[MessageCreate, ...] = (),
) -> None:
    """A turn rendered: `speak` is `Memory.say` or a method taking the same arguments (`edit`);
    `items`: the turn's message with its attachments, in place of `text`."""
    streaming = sys.stdout.isatty() if stream is None else stream
    shown = terminal_safe if sys.stdout.isatty() else str
    wrote = []

    def write(piece: str) -> None:
        wrote.append(piece)
        sys.stdout.write(shown(piece))
        sys.stdout.flush()

    try:
        reply = (speak or memory_of(ctx).say)(
            thread,
            text,
            options,
            stream=streaming,
            on_text=write if streaming else None,
            on_note=note,
            **({"items": items} if items else {}),
        )
    finally:
        if wrote:
            write("\n")
    if not streaming:
        typer.echo(shown(reply.text))
    if usage:
        note(_usage_line(reply.message))


def _usage_line(message) -> str:
    tokens = f"{message.prompt_tokens or 0} prompt + {message.completion_tokens or 0} completion tokens"
    return f"{tokens}, cost {call_cost_text(message.cost)}, {message.latency_ms} ms ({message.model})"


def _message_text(message: str | None) -> str | None:
    """The message as `llm` takes one: text piped on stdin, then the argument after a blank line
    (`cat notes.txt | memchat say T "summarise this"`); `-` reads stdin alone. One trailing
    newline of piped text is not part of the message. None: no message was given at all."""
    piped = _stdin_text() if message == "-" or (sys.stdin is not None and not sys.stdin.isatty()) else ""
    if message == "-":
        return piped
    if piped and message is not None:
        return f"{piped}\n\n{message}"
    return piped or message


def _stdin_text() -> str:
    """What stdin holds ("" when it is closed, as `<&-` leaves it)."""
    if sys.stdin is None:
        return ""
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the message on stdin is not UTF-8 (byte {exc.start})") from None
    return text.removesuffix("\n").removesuffix("\r")


@app.command()
@with_turn_options("model", "budget", "max_tokens", "policy", "recall")
def context(
    ctx: typer.Context,
    thread: ThreadArg,
    message: Annotated[
        Optional[str], typer.Argument(help="The next message, to see exactly what would be sent.", show_default=False)
    ] = None,
    *,
    options: TurnOptions,
    as_json: JsonOpt = False,
):
    """Show what the next turn would send, without calling the model."""
    result = memory_of(ctx).context(thread, message, options)
    if as_json:
        print_json(context_json(result))
    else:
        render_context(result)


def render_context(result: Context) -> None:
    margin = f" ({result.room} after the margin for an approximate tokenizer)" if result.room < result.budget else ""
    typer.echo(
        f"model {result.model} · tokenizer {result.tokenizer} · budget {result.budget} tokens{margin} · "
        f"policy {result.policy}"
    )
    span = next((e.span for e in result.entries if e.kind == "summary" and e.kept), None)
    recalled = {p for e in result.entries if e.kind == "recall" and e.kept for p in e.recalled}
    for entry in result.entries:
        mark = "  " if entry.kept else "✗ "
        preview = " ".join(entry.content.split())
        preview = preview if len(preview) <= 60 else preview[:59] + "…"
        line = f"{mark}{_where(entry):>9}  {entry.role:<9} {entry.tokens:>7}  {preview}"
        if not entry.kept and entry.position is not None:
            if span and span[0] <= entry.position <= span[1]:
                line += "  (in the summary)"
            if entry.position in recalled:
                line += "  (recalled)"
        if entry.masked:
            line += "  (masked: a stub is sent)"
        typer.secho(terminal_safe(line), dim=not entry.kept)
    kept = sum(1 for entry in result.entries if entry.kept)
    typer.echo(
        f"sends {kept} of {len(result.entries)} messages: {result.prompt_tokens} of {result.budget} tokens "
        f"({result.framing_tokens} of framing); {len(result.dropped)} dropped (✗) by the budget"
    )
    if result.summary_due:
        first, last = result.summary_due
        typer.echo(f"the next turn first folds messages #{first}–#{last} into the summary (one model call)")


def _where(entry: ContextEntry) -> str:
    if entry.kind == "summary" and entry.span:
        return f"#{entry.span[0]}–#{entry.span[1]}"
    if entry.kind == "recall":
        return "recall"
    return {"system": "sys", "new": "new"}.get(entry.kind, f"#{entry.position}")
