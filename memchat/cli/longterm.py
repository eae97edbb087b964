"""Long-term memory: summaries, full-text search, and the vectors of recall by meaning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from memchat.cli.app import app, memory_of
from memchat.cli.options import (
    ApiBaseOpt,
    BudgetOpt,
    JsonOpt,
    ModelOpt,
    SummaryModelOpt,
    ThreadArg,
    TimeoutOpt,
)
from memchat.cli.render import call_cost_text, local_time, note, print_json, search_snippet
from memchat.terminal import terminal_safe
from memchat.views import search_json

if TYPE_CHECKING:
    from memchat.records import SummaryPublic


@app.command()
def summary(
    ctx: typer.Context,
    thread: ThreadArg,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Summarize again from the first message (model calls).")
    ] = False,
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
    memory = memory_of(ctx)
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
                on_note=note,
            )
        ]
    elif history:
        summaries = memory.summaries(thread)
    else:
        current = memory.summary(thread)
        summaries = [current] if current else []
    if as_json:
        data = [s.model_dump(mode="json") for s in summaries]
        print_json(data if history else (data[0] if data else None))
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


@app.command()
def embed(ctx: typer.Context, thread: ThreadArg, as_json: JsonOpt = False):
    """Embed the thread's messages now, for recall by meaning.

    With the thread's --recall-embeddings model, in batches, instead of a few hundred at a time as
    turns recall; run again, it embeds only the new messages."""
    memory = memory_of(ctx)
    made = memory.embed(thread)
    if as_json:
        print_json({"thread": memory.thread(thread).id, "embedded": made})
        return
    typer.echo(f"embedded {made} message{'' if made == 1 else 's'}")


def _render_summary(made: SummaryPublic) -> None:
    usage = ""
    if made.prompt_tokens is not None or made.completion_tokens is not None:
        usage = f" · {made.prompt_tokens or 0}+{made.completion_tokens or 0} tokens"
    cost = f" · cost {call_cost_text(made.cost)}"
    typer.secho(
        f"messages #{made.first_position}–#{made.last_position} · {made.model} · {local_time(made.created_at)}{usage}{cost}",
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
    hits = memory_of(ctx).search(query, thread_id=thread, limit=limit)
    if as_json:
        rows = [search_json(hit) for hit in hits]
        print_json(rows)
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
            terminal_safe(
                f"{message.thread_id} #{message.position} {message.role} · {local_time(message.created_at)}{title}"
            ),
            bold=True,
        )
        typer.echo("  " + search_snippet(hit.snippet))
