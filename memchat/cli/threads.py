"""Threads: start, configure, list, show, retitle and delete them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from memchat.cli import attachments
from memchat.cli.app import app, chosen_thread, memory_of, new_database_file, operator_memory_of
from memchat.cli.options import (
    BudgetOpt,
    ContinueOpt,
    JsonOpt,
    ModelOpt,
    OptionalThreadArg,
    PolicyOpt,
    RecallEmbeddingsOpt,
    RecallOpt,
    SummaryModelOpt,
    SummaryPromptOpt,
    SummaryShareOpt,
    ThreadApiBaseOpt,
    ThreadArg,
    ToolOutputsOpt,
    thread_settings,
)
from memchat.cli.render import cost_text, local_time, note, paged, print_json
from memchat.errors import InvalidInput
from memchat.settings import default_model
from memchat.terminal import terminal_safe
from memchat.views import thread_json

if TYPE_CHECKING:
    from memchat.interface import ConversationMemory
    from memchat.records import ThreadPublic
    from memchat.schemas import ThreadSettings


@app.command()
def new(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title", "-t", help="A title for the thread.")] = "",
    system: Annotated[
        Optional[str], typer.Option("--system", "-s", help="System prompt, sent first on every turn.")
    ] = None,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    recall_embeddings: RecallEmbeddingsOpt = None,
    summary_model: SummaryModelOpt = None,
    summary_share: SummaryShareOpt = None,
    summary_prompt: SummaryPromptOpt = None,
    api_base: ThreadApiBaseOpt = None,
    tool_outputs: ToolOutputsOpt = None,
):
    """Start a thread and print its id."""
    settings = thread_settings(
        title=title,
        system=system,
        model=model,
        budget=budget,
        policy=policy,
        recall=recall,
        recall_embeddings=recall_embeddings,
        summary_model=summary_model,
        summary_share=summary_share,
        summary_prompt=prompt_file(summary_prompt),
        api_base=api_base,
        tool_outputs=tool_outputs,
    )
    typer.echo(start_thread(ctx, settings).id)


def start_thread(ctx: typer.Context, settings: ThreadSettings) -> ThreadPublic:
    """A new thread with the settings given (`memchat new`, `memchat chat` without a thread)."""
    thread = memory_of(ctx).new_thread(settings)
    created = new_database_file(ctx)
    if created:
        note(f"created the database {created} (`memchat db path` shows where it is)")
    return thread


@app.command("set")
def set_(
    ctx: typer.Context,
    thread: ThreadArg,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt (empty: none).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="provider/model (empty: the default).")] = None,
    budget: Annotated[
        Optional[int], typer.Option("--budget", "-b", help="Maximum prompt tokens (0: the model's).")
    ] = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    recall_embeddings: RecallEmbeddingsOpt = None,
    summary_model: Annotated[
        Optional[str], typer.Option("--summary-model", help="Model that writes summaries (empty: the turn's model).")
    ] = None,
    summary_share: SummaryShareOpt = None,
    summary_prompt: SummaryPromptOpt = None,
    api_base: ThreadApiBaseOpt = None,
    tool_outputs: ToolOutputsOpt = None,
):
    """Change a thread's settings; the others stay as they are (an empty value, or a budget of 0,
    returns one to its default)."""
    settings = thread_settings(
        system=system,
        model=model,
        budget=budget or None,
        policy=policy,
        recall=recall,
        recall_embeddings=recall_embeddings,
        summary_model=summary_model,
        summary_share=summary_share,
        summary_prompt=prompt_file(summary_prompt) if summary_prompt is not None else None,
        api_base=api_base,
        tool_outputs=tool_outputs,
    )
    back_to_default = {"budget": None} if budget == 0 else {}
    if summary_prompt is not None and settings.summary_prompt is None:
        back_to_default["summary_prompt"] = None
    changes = settings.model_fields_set | set(back_to_default)
    if not changes:
        raise InvalidInput("nothing to change: give at least one setting (see `memchat set --help`)")
    changed = memory_of(ctx).configure(thread, settings, **back_to_default)
    note(f"changed {', '.join(sorted(changes))} of thread {changed.id}")
    _render_settings(changed)


def prompt_file(path: str | None) -> str | None:
    """The summary prompt in the file `path` (None, or `default`: memchat's own)."""
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
        ("recall by", f"words, re-ranked by {thread.recall_embeddings}" if thread.recall_embeddings else "words"),
        ("api base", thread.api_base or "the provider's own"),
        (
            "tool outputs",
            f"{thread.tool_outputs} (older ones {'as stubs' if thread.tool_outputs == 'mask' else 'whole'})",
        ),
    ]
    if thread.policy == "summary" or thread.summary_model or thread.summary_share or thread.summary_prompt:
        rows += [
            ("summary model", thread.summary_model or "the turn's model"),
            ("summary share", str(thread.summary_share or 0.25)),
            ("summary prompt", "custom" if thread.summary_prompt else "memchat's own"),
        ]
    return rows


@app.command("list")
def list_threads(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    tenant: Annotated[
        Optional[str],
        typer.Option("--tenant", metavar="NAME", help="Only the threads of this API key (`memchat key`)."),
    ] = None,
    last: Annotated[
        Optional[int],
        typer.Option("--last", "-n", min=1, metavar="N", help="Only the N with the most recent activity."),
    ] = None,
):
    """Threads, most recent activity first: each one's messages, as `show` lists them, and how
    many of those belong to turns that got no complete reply (`message_count` and
    `unfinished_count` in JSON)."""
    if tenant is not None:
        memory: ConversationMemory = operator_memory_of(ctx, option="--tenant").as_tenant(tenant)
    else:
        memory = memory_of(ctx)
    threads = memory.threads(last=last)
    if as_json:
        totals = memory.usage_totals()
        print_json([thread_json(thread, totals.get(thread.id)) for thread in threads])
        return
    if not threads:
        typer.echo("no threads yet: `memchat new` starts one", err=True)
        return
    rows = [("ID", "TITLE", "MODEL", "MESSAGES", "LAST ACTIVITY")]
    rows += [
        (
            t.id,
            t.title or "-",
            t.model or f"{default_model()} (default)",
            str(t.message_count) + (f" ({t.unfinished_count} unanswered)" if t.unfinished_count else ""),
            local_time(t.updated_at),
        )
        for t in threads
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo(terminal_safe("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]))


@app.command()
def show(
    ctx: typer.Context,
    thread: OptionalThreadArg = None,
    latest: ContinueOpt = False,
    last: Annotated[
        Optional[int], typer.Option("--last", "-n", min=1, metavar="N", help="Only the newest N messages.")
    ] = None,
    as_json: JsonOpt = False,
    pager: Annotated[
        bool,
        typer.Option(
            "--pager/--no-pager",
            help="On a terminal, page the output ($MEMCHAT_PAGER, $PAGER or less; empty: none). Never when piped.",
        ),
    ] = True,
):
    """The conversation, readable in a terminal (-c: the most recent thread's)."""
    thread = chosen_thread(ctx, thread, latest, doing="showing")
    memory = memory_of(ctx)
    if as_json:
        memory.write_export(sys.stdout, thread)
        return
    info = memory.thread(thread)
    with paged(ctx, enabled=pager):
        _show_thread(memory, info, last)


def _show_thread(memory: ConversationMemory, info: ThreadPublic, last: Optional[int]) -> None:
    details = [info.model or f"{default_model()} (default)"]
    if info.budget:
        details.append(f"budget {info.budget}")
    if info.policy != "window":
        details.append(f"policy {info.policy}")
    if info.recall:
        details.append(f"recall {info.recall}")
    if info.recall_embeddings:
        details.append(f"embeddings {info.recall_embeddings}")
    typer.secho(terminal_safe(f"{info.title or 'untitled'}  [{info.id}]  " + " · ".join(details)), bold=True)
    if info.forked_from:
        typer.secho(f"forked from {info.forked_from} at #{info.forked_at}", dim=True)
    if info.source:
        typer.secho(terminal_safe(f"imported from {info.source}"), dim=True)
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
    shown = memory.messages(info.id, last=last)
    if last is not None and info.message_count > len(shown):
        typer.secho(f"… {info.message_count - len(shown)} earlier messages (`--last` shows more)", dim=True)
    for message in shown:
        shown_status = "interrupted" if message.status == "pending" and not in_progress else message.status
        status = "" if message.status == "complete" else f" ({shown_status})"
        if message.finish_reason == "length":
            status += " (stopped at its max tokens)"
        if message.context_limit is not None:
            status += f" (later turns send its first {message.context_limit} tokens)"
        colour = {"user": "cyan", "assistant": "green"}.get(message.role, "magenta")
        typer.echo()
        typer.secho(f"{message.role}{status} · #{message.position} · {local_time(message.created_at)}", fg=colour)
        typer.echo(_indent(terminal_safe("\n".join(attachments.lines(message)))))
    usage = memory.usage_totals(info.id).get(info.id)
    if usage:
        typer.echo()
        typer.secho(
            f"usage of the thread: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion "
            f"tokens, cost {cost_text(usage['cost'], usage['unknown_cost'])} (replies and summaries)",
            dim=True,
        )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines()) or "  "


@app.command()
def rename(ctx: typer.Context, thread: ThreadArg, title: Annotated[str, typer.Argument(help="The new title.")]):
    """Give a thread a new title."""
    renamed = memory_of(ctx).rename(thread, title)
    note(f"renamed thread {renamed.id} to {renamed.title!r}")


@app.command()
def rm(
    ctx: typer.Context,
    thread: ThreadArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
):
    """Delete a thread and all its messages."""
    memory = memory_of(ctx)
    info = memory.thread(thread)
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput("refusing to delete without confirmation: add --yes")
        label = f"{info.id} ({info.title})" if info.title else info.id
        typer.confirm(f"Delete thread {label} and its {info.message_count} messages?", abort=True)
    memory.delete(info.id)
    note(f"deleted thread {info.id} and its {info.message_count} messages")
