"""Options and arguments shared by several commands (Typer needs each declared per command)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from memchat.config import MAX_REPLY_TOKENS, MAX_TEMPERATURE

ThreadArg = Annotated[str, typer.Argument(help="Thread id (or a unique prefix of it).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="provider/model, e.g. openai/gpt-4o, memchat/echo.")]
BudgetOpt = Annotated[Optional[int], typer.Option("--budget", "-b", min=1, help="Maximum prompt tokens sent.")]
MaxTokensOpt = Annotated[
    Optional[int], typer.Option("--max-tokens", min=1, max=MAX_REPLY_TOKENS, help="Maximum reply tokens.", show_default="1024")
]


class PolicyName(str, Enum):
    window = "window"
    summary = "summary"


PolicyOpt = Annotated[
    Optional[PolicyName],
    typer.Option(
        "--policy",
        help="Memory policy: window (history that does not fit is left out) or summary (it is condensed).",
        show_default=False,
        case_sensitive=False,
    ),
]
RecallOpt = Annotated[
    Optional[int],
    typer.Option("--recall", min=0, max=50, help="Add the K older messages that best match the new one as excerpts."),
]
RecallEmbeddingsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--recall-embeddings",
        metavar="MODEL",
        help="Re-rank what recall finds by meaning with this embedding model (provider/model; empty: words alone).",
    ),
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


TemperatureOpt = Annotated[
    Optional[float], typer.Option("--temperature", min=0.0, max=MAX_TEMPERATURE, help="Sampling temperature.")
]
ApiBaseOpt = Annotated[
    Optional[str],
    typer.Option("--api-base", metavar="URL", help="Provider base URL for this call; no key needed with it if the endpoint wants none."),
]
ThreadApiBaseOpt = Annotated[
    Optional[str],
    typer.Option(
        "--api-base",
        metavar="URL",
        help="Provider base URL for the thread's turns, e.g. a local server (empty: the provider's own; no password).",
    ),
]
TimeoutOpt = Annotated[
    Optional[float],
    typer.Option("--timeout", min=1.0, max=86_400.0, help="Seconds each model call may take, retries included.", show_default="120"),
]
StreamOpt = Annotated[
    Optional[bool],
    typer.Option("--stream/--no-stream", help="Print the reply as it arrives.", show_default="when stdout is a terminal"),
]
