"""The `memchat` command: each command parses its arguments, calls one Memory method, renders.

Errors are turned into one line on stderr and an exit code here, in `_Commands`, and
nowhere else; MEMCHAT_DEBUG=1 lets tracebacks through.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Optional, TextIO

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from memchat.api import Memory
from memchat.config import debug_enabled, default_model, import_limit_bytes
from memchat.context import Context, ContextEntry
from memchat.errors import Interrupted, InvalidInput, MemchatError, StorageError, exit_code_for_signal
from memchat.redact import redact
from memchat.terminal import terminal_safe
from memchat.storage.fulltext import highlights
from memchat.storage.models import SummaryPublic, ThreadPublic, as_utc

EXIT_STORAGE = StorageError.exit_code


class _Commands(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Usage errors as one line too, instead of Typer's framed panel."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except TyperException as exc:
            context = getattr(exc, "ctx", None)
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            typer.echo(f"memchat: {exc.format_message()}{hint}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            typer.echo("memchat: aborted", err=True)
            sys.exit(1)
        if not _flushed():
            code = EXIT_STORAGE
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except MemchatError as exc:
            if debug_enabled():
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as interrupt:
            _fail("interrupted", exit_code_for_signal(getattr(interrupt, "signal_number", None)))
        except BrokenPipeError:
            # The reader went away (`memchat export --all | head`): nothing more to say to it.
            _silence_stdout()
            raise typer.Exit(1)
        except OSError as exc:
            if debug_enabled():
                raise
            _silence_stdout()
            _fail(f"cannot write the output: {exc.strerror or exc}", EXIT_STORAGE)
        except Exception as exc:
            if debug_enabled():
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (MEMCHAT_DEBUG=1 shows the traceback)", 1)


def _fail(message: str, code: int):
    first_line = message.splitlines()[0] if message else "failed"
    typer.echo(f"memchat: {terminal_safe(redact(first_line))}", err=True)
    raise typer.Exit(code)


def _silence_stdout() -> None:
    """Output can no longer be written (a closed pipe, a full disk): drop what is buffered so the
    interpreter's own flush at exit does not fail a second time with a traceback."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _flushed() -> bool:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        typer.echo(f"memchat: cannot write the output: {exc.strerror or exc}", err=True)
        return False
    return True


def _install_signal_handlers() -> None:
    """SIGTERM and SIGHUP end a turn as Ctrl-C does (the partial reply kept, the lease released);
    SIGINT is handled even where the parent started memchat with it ignored. The first signal
    starts the clean-up; later ones wait for it to finish."""

    def interrupt(signal_number, _frame):
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signal_number)

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, interrupt)


app = typer.Typer(
    cls=_Commands,
    help="Persistent conversation memory for LLMs: threads in SQL, context fitted to a token budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(cls=_Commands, help="Schema migrations (memchat also migrates on first use).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        Optional[str],
        typer.Option("--db", help="Database: a file path or SQLAlchemy URL. Default: $MEMCHAT_DB, else a file in the user data dir."),
    ] = None,
):
    ctx.obj = {"db": db}


def _memory(ctx: typer.Context) -> Memory:
    root = ctx.find_root()
    if "memory" not in root.obj:
        root.obj["memory"] = Memory(root.obj["db"])
        root.call_on_close(root.obj["memory"].close)
    return root.obj["memory"]


ThreadArg = Annotated[str, typer.Argument(help="Thread id (or a unique prefix of it).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="provider/model, e.g. openai/gpt-4o, memchat/echo.")]
BudgetOpt = Annotated[Optional[int], typer.Option("--budget", "-b", min=1, help="Maximum prompt tokens sent.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Maximum reply tokens.", show_default="1024")]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _when(moment: datetime) -> str:
    return as_utc(moment).astimezone().strftime("%Y-%m-%d %H:%M")


PolicyOpt = Annotated[
    Optional[str],
    typer.Option(
        "--policy",
        help="Memory policy: window (history that does not fit is left out) or summary (it is condensed).",
        show_default=False,
    ),
]
RecallOpt = Annotated[
    Optional[int],
    typer.Option("--recall", min=0, max=50, help="Add the K older messages that best match the new one as excerpts."),
]
SummaryModelOpt = Annotated[
    Optional[str], typer.Option("--summary-model", help="Model that writes summaries.", show_default="the turn's model")
]
SummaryShareOpt = Annotated[
    Optional[float],
    typer.Option("--summary-share", min=0.01, max=0.9, help="Most of the history's room a summary may take.", show_default="0.25"),
]
SummaryPromptOpt = Annotated[
    Optional[str],
    typer.Option(
        "--summary-prompt",
        metavar="FILE",
        help="Instructions for summaries, from FILE (`default`: memchat's own; see `memchat summary --prompt`).",
    ),
]


@app.command()
def new(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title", "-t", help="A title for the thread.")] = "",
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt, sent first on every turn.")] = None,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    summary_model: SummaryModelOpt = None,
    summary_share: SummaryShareOpt = None,
    summary_prompt: SummaryPromptOpt = None,
):
    """Start a thread and print its id."""
    thread = _memory(ctx).new_thread(
        title=title,
        system=system,
        model=model,
        budget=budget,
        policy=policy or "window",
        recall=recall or 0,
        summary_model=summary_model,
        summary_share=summary_share,
        summary_prompt=_prompt_file(summary_prompt),
    )
    typer.echo(thread.id)


@app.command("set")
def set_(
    ctx: typer.Context,
    thread: ThreadArg,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt (empty: none).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="provider/model (empty: the default).")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", "-b", min=0, help="Maximum prompt tokens (0: the model's).")] = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    summary_model: Annotated[
        Optional[str], typer.Option("--summary-model", help="Model that writes summaries (empty: the turn's model).")
    ] = None,
    summary_share: SummaryShareOpt = None,
    summary_prompt: SummaryPromptOpt = None,
):
    """Change a thread's settings; the others stay as they are."""
    given = {
        "system": system,
        "model": model,
        "budget": budget,
        "policy": policy,
        "recall": recall,
        "summary_model": summary_model,
        "summary_share": summary_share,
    }
    changes: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    for key in ("system", "model", "summary_model"):
        if changes.get(key) == "":
            changes[key] = None
    if changes.get("budget") == 0:
        changes["budget"] = None
    if summary_prompt is not None:
        changes["summary_prompt"] = _prompt_file(summary_prompt)
    if not changes:
        raise InvalidInput("nothing to change: give at least one setting (see `memchat set --help`)")
    _render_settings(_memory(ctx).configure(thread, **changes))


def _prompt_file(path: str | None) -> str | None:
    if path is None or path == "default":
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the summary prompt {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise InvalidInput(f"the summary prompt {path} is empty")
    return text


def _render_settings(thread: ThreadPublic) -> None:
    typer.echo(f"{thread.id}  {terminal_safe(thread.title) or 'untitled'}")
    for label, value in _settings(thread):
        typer.echo(f"  {label:<15} {value}")


def _settings(thread: ThreadPublic) -> list[tuple[str, str]]:
    rows = [
        ("model", thread.model or f"{default_model()} (default)"),
        ("budget", str(thread.budget) if thread.budget else "the model's input limit (default)"),
        ("policy", thread.policy),
        ("recall", str(thread.recall) if thread.recall else "off"),
    ]
    if thread.policy == "summary" or thread.summary_model or thread.summary_share or thread.summary_prompt:
        rows += [
            ("summary model", thread.summary_model or "the turn's model"),
            ("summary share", str(thread.summary_share or 0.25)),
            ("summary prompt", "custom" if thread.summary_prompt else "memchat's own"),
        ]
    return rows


TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", min=0.0, help="Sampling temperature.")]
ApiBaseOpt = Annotated[Optional[str], typer.Option("--api-base", help="Provider base URL for this call.")]
TimeoutOpt = Annotated[
    Optional[float],
    typer.Option("--timeout", min=1.0, max=86_400.0, help="Seconds each model call may take, retries included.", show_default="120"),
]
StreamOpt = Annotated[
    Optional[bool],
    typer.Option("--stream/--no-stream", help="Print the reply as it arrives.", show_default="when stdout is a terminal"),
]


@app.command()
def say(
    ctx: typer.Context,
    thread: ThreadArg,
    message: Annotated[Optional[str], typer.Argument(help="The message; `-` or none with a pipe reads stdin.", show_default=False)] = None,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    api_base: ApiBaseOpt = None,
    timeout: TimeoutOpt = None,
    stream: StreamOpt = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    summary_model: SummaryModelOpt = None,
):
    """Send a message with the thread's memory and print the reply."""
    _turn(ctx, thread, _message_text(message), locals())


@app.command()
def retry(
    ctx: typer.Context,
    thread: ThreadArg,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    api_base: ApiBaseOpt = None,
    timeout: TimeoutOpt = None,
    stream: StreamOpt = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    summary_model: SummaryModelOpt = None,
):
    """Send the thread's last unanswered message again (after a failed or cut-off reply)."""
    _turn(ctx, thread, None, locals())


@app.command()
def accept(ctx: typer.Context, thread: ThreadArg):
    """Keep a cut-off last reply as if complete, so later turns send it as history."""
    _memory(ctx).accept(thread)


def _turn(ctx: typer.Context, thread: str, text: str | None, options: dict) -> None:
    streaming = sys.stdout.isatty() if options["stream"] is None else options["stream"]
    shown = terminal_safe if sys.stdout.isatty() else str
    wrote = []

    def write(piece: str) -> None:
        wrote.append(piece)
        sys.stdout.write(shown(piece))
        sys.stdout.flush()

    try:
        reply = _memory(ctx).say(
            thread,
            text,
            model=options["model"],
            budget=options["budget"],
            max_tokens=options["max_tokens"],
            temperature=options["temperature"],
            api_base=options["api_base"],
            timeout=options["timeout"],
            stream=streaming,
            on_text=write if streaming else None,
            on_note=_note,
            policy=options["policy"],
            recall=options["recall"],
            summary_model=options["summary_model"],
        )
    finally:
        if wrote:
            write("\n")
    if not streaming:
        typer.echo(shown(reply.text))


def _note(note: str) -> None:
    """What memchat did on the user's behalf, as one line on stderr."""
    typer.echo(f"memchat: {terminal_safe(note)}", err=True)


def _message_text(message: str | None) -> str:
    if message == "-" or (message is None and not sys.stdin.isatty()):
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the message on stdin is not UTF-8 (byte {exc.start})") from None
    if message is None:
        raise InvalidInput("no message: give it as an argument, or pipe it on stdin")
    return message


@app.command("list")
def list_threads(ctx: typer.Context, as_json: JsonOpt = False):
    """Threads, most recent activity first."""
    threads = _memory(ctx).threads()
    if as_json:
        _print_json([thread.model_dump(mode="json") for thread in threads])
        return
    if not threads:
        typer.echo("no threads yet: `memchat new` starts one", err=True)
        return
    rows = [("ID", "TITLE", "MODEL", "MESSAGES", "LAST ACTIVITY")]
    rows += [
        (t.id, t.title or "-", t.model or f"{default_model()} (default)", str(t.message_count), _when(t.updated_at))
        for t in threads
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo(terminal_safe("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]))


@app.command()
def show(ctx: typer.Context, thread: ThreadArg, as_json: JsonOpt = False):
    """The conversation, readable in a terminal."""
    memory = _memory(ctx)
    if as_json:
        memory.write_export(sys.stdout, thread)
        return
    info = memory.thread(thread)
    details = [info.model or f"{default_model()} (default)"]
    if info.budget:
        details.append(f"budget {info.budget}")
    if info.policy != "window":
        details.append(f"policy {info.policy}")
    if info.recall:
        details.append(f"recall {info.recall}")
    typer.secho(terminal_safe(f"{info.title or 'untitled'}  [{info.id}]  " + " · ".join(details)), bold=True)
    current = memory.summary(info.id)
    if current:
        typer.secho(
            f"summarized: messages #{current.first_position}–#{current.last_position} (`memchat summary {info.id}`)",
            dim=True,
        )
    if info.system:
        typer.secho("system:", fg="magenta")
        typer.echo(_indent(terminal_safe(info.system)))
    in_progress = memory.turn_in_progress(info.id)
    for message in memory.messages(info.id):
        shown_status = "interrupted" if message.status == "pending" and not in_progress else message.status
        status = "" if message.status == "complete" else f" ({shown_status})"
        if message.context_limit is not None:
            status += f" (later turns send its first {message.context_limit} tokens)"
        colour = {"user": "cyan", "assistant": "green"}.get(message.role, "magenta")
        typer.echo()
        typer.secho(f"{message.role}{status} · #{message.position} · {_when(message.created_at)}", fg=colour)
        typer.echo(_indent(terminal_safe(message.content)))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines()) or "  "


@app.command()
def context(
    ctx: typer.Context,
    thread: ThreadArg,
    message: Annotated[Optional[str], typer.Argument(help="The next message, to see exactly what would be sent.", show_default=False)] = None,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    max_tokens: MaxTokensOpt = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    as_json: JsonOpt = False,
):
    """Show what the next turn would send, without calling the model."""
    result = _memory(ctx).context(
        thread, message, model=model, budget=budget, max_tokens=max_tokens, policy=policy, recall=recall
    )
    if as_json:
        _print_json(_context_json(result))
    else:
        _render_context(result)


def _context_json(result: Context) -> dict[str, Any]:
    return {
        "model": result.model,
        "tokenizer": result.tokenizer,
        "budget": result.budget,
        "room": result.room,
        "prompt_tokens": result.prompt_tokens,
        "framing_tokens": result.framing_tokens,
        "policy": result.policy,
        "summary_due": list(result.summary_due) if result.summary_due else None,
        "dropped": len(result.dropped),
        "entries": [
            {
                "role": e.role,
                "kind": e.kind,
                "position": e.position,
                "span": list(e.span) if e.span else None,
                "recalled": list(e.recalled),
                "tokens": e.tokens,
                "kept": e.kept,
                "content": e.content,
            }
            for e in result.entries
        ],
        "messages": result.messages,
    }


def _render_context(result: Context) -> None:
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
        typer.secho(terminal_safe(line), dim=not entry.kept)
    kept = len(result.messages)
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


@app.command()
def summary(
    ctx: typer.Context,
    thread: ThreadArg,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Summarize again from the first message (model calls).")] = False,
    prompt: Annotated[bool, typer.Option("--prompt", help="Print the summary instructions in effect instead.")] = False,
    history: Annotated[bool, typer.Option("--all", help="Every summary made, oldest first.")] = False,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    summary_model: SummaryModelOpt = None,
    timeout: TimeoutOpt = None,
    api_base: ApiBaseOpt = None,
    as_json: JsonOpt = False,
):
    """Print the thread's current summary and the span of messages it stands for."""
    memory = _memory(ctx)
    if prompt:
        from memchat.summary import prompt_for

        typer.echo(prompt_for(memory.thread(thread)))
        return
    if rebuild:
        summaries = [
            memory.rebuild_summary(
                thread,
                model=model,
                budget=budget,
                summary_model=summary_model,
                timeout=timeout,
                api_base=api_base,
                on_note=_note,
            )
        ]
    elif history:
        summaries = memory.summaries(thread)
    else:
        current = memory.summary(thread)
        summaries = [current] if current else []
    if as_json:
        data = [s.model_dump(mode="json") for s in summaries]
        _print_json(data if history else (data[0] if data else None))
        return
    if not summaries:
        info = memory.thread(thread)
        hint = "" if info.policy == "summary" else "; `memchat set THREAD --policy summary` turns summaries on"
        typer.echo(f"thread {info.id} has no summary yet{hint}", err=True)
        return
    for index, made in enumerate(summaries):
        if index:
            typer.echo()
        _render_summary(made)


def _render_summary(made: SummaryPublic) -> None:
    usage = ""
    if made.prompt_tokens is not None or made.completion_tokens is not None:
        usage = f" · {made.prompt_tokens or 0}+{made.completion_tokens or 0} tokens"
    cost = f" · ${made.cost:.6f}" if made.cost else ""
    typer.secho(
        f"messages #{made.first_position}–#{made.last_position} · {made.model} · {_when(made.created_at)}{usage}{cost}",
        bold=True,
    )
    typer.echo(terminal_safe(made.content))


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='Words (all must match), "a phrase", a OR b, -word.')],
    thread: Annotated[Optional[str], typer.Option("--thread", "-t", help="Only this thread.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many results.")] = 20,
    as_json: JsonOpt = False,
):
    """Full-text search over every stored message, best match first."""
    hits = _memory(ctx).search(query, thread_id=thread, limit=limit)
    if as_json:
        rows = []
        for hit in hits:
            snippet, spans = highlights(hit.snippet)
            rows.append(
                {
                    "thread": hit.message.thread_id,
                    "title": hit.thread_title,
                    "position": hit.message.position,
                    "role": hit.message.role,
                    "status": hit.message.status,
                    "created_at": as_utc(hit.message.created_at).isoformat(),
                    "score": hit.score,
                    "snippet": snippet,
                    "highlights": [list(span) for span in spans],
                }
            )
        _print_json(rows)
        if not rows:
            raise typer.Exit(1)
        return
    if not hits:
        typer.echo(f"no message matches {query!r}", err=True)
        raise typer.Exit(1)
    for hit in hits:
        message = hit.message
        title = f"  {hit.thread_title}" if hit.thread_title else ""
        typer.secho(
            terminal_safe(f"{message.thread_id} #{message.position} {message.role} · {_when(message.created_at)}{title}"),
            bold=True,
        )
        snippet, spans = highlights(hit.snippet)
        typer.echo("  " + _highlighted(snippet.replace("\n", " "), spans))


def _highlighted(text: str, spans: list[tuple[int, int]]) -> str:
    pieces, at = [], 0
    for start, end in spans:
        pieces.append(terminal_safe(text[at:start]))
        pieces.append(typer.style(terminal_safe(text[start:end]), bold=True, fg="yellow"))
        at = end
    pieces.append(terminal_safe(text[at:]))
    return "".join(pieces)


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
    memory = _memory(ctx)
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
    for thread_id in _memory(ctx).import_(raw):
        typer.echo(thread_id)


@app.command()
def rename(ctx: typer.Context, thread: ThreadArg, title: Annotated[str, typer.Argument(help="The new title.")]):
    """Give a thread a new title."""
    _memory(ctx).rename(thread, title)


@app.command()
def rm(
    ctx: typer.Context,
    thread: ThreadArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
):
    """Delete a thread and all its messages."""
    memory = _memory(ctx)
    info = memory.thread(thread)
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("refusing to delete without confirmation: add --yes")
        label = f"{info.id} ({info.title})" if info.title else info.id
        typer.confirm(f"Delete thread {label} and its {info.message_count} messages?", abort=True)
    memory.delete(info.id)


@db_app.command()
def upgrade(ctx: typer.Context):
    """Bring the database schema to the newest revision."""
    typer.echo(_memory(ctx).upgrade_schema())


@db_app.command()
def current(ctx: typer.Context):
    """Print the database's schema revision and the newest one known."""
    typer.echo(_memory(ctx).schema_state())


def main() -> None:
    _install_signal_handlers()
    app(prog_name="memchat")
