"""Options and arguments shared by several commands. The limits on their values are not here:
they are the fields' of `memchat.schemas` (TurnOptions, ThreadSettings), which every face
checks with; a bad value is refused as bad input (exit 2) naming the option."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from memchat.errors import InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

    from memchat.schemas import ThreadSettings, TurnOptions

ThreadArg = Annotated[str, typer.Argument(help="Thread id (or a unique prefix of it).", show_default=False)]
OptionalThreadArg = Annotated[
    Optional[str],
    typer.Argument(
        metavar="THREAD", help="Thread id (or a unique prefix of it); with -c, leave it out.", show_default=False
    ),
]
ContinueOpt = Annotated[
    bool,
    typer.Option("--continue", "-c", help="The thread with the most recent activity (as `llm -c`), named on stderr."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", help="provider/model, e.g. openai/gpt-4o, memchat/echo.")
]
BudgetOpt = Annotated[Optional[int], typer.Option("--budget", "-b", help="Maximum prompt tokens sent.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Maximum reply tokens.", show_default="1024")]


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


class ToolOutputsName(str, Enum):
    mask = "mask"
    keep = "keep"


ToolOutputsOpt = Annotated[
    Optional[ToolOutputsName],
    typer.Option(
        "--tool-outputs",
        help="Older tool outputs in requests: mask (a stub in their place; the default) or keep (whole).",
        show_default=False,
        case_sensitive=False,
    ),
]
RecallOpt = Annotated[
    Optional[int],
    typer.Option("--recall", help="Add the K older messages that best match the new one as excerpts."),
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
    typer.Option("--summary-share", help="Most of the history's room a summary may take.", show_default="0.25"),
]
SummaryPromptOpt = Annotated[
    Optional[str],
    typer.Option(
        "--summary-prompt",
        metavar="FILE",
        help="Instructions for summaries, from FILE (`default`: memchat's own; see `memchat summary --prompt`).",
    ),
]


TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature.")]
TopPOpt = Annotated[
    Optional[float], typer.Option("--top-p", help="Nucleus sampling: the probability mass sampled from (0 to 1).")
]
ReasoningEffortOpt = Annotated[
    Optional[str],
    typer.Option(
        "--reasoning-effort",
        metavar="EFFORT",
        help="How hard a reasoning model thinks: none, minimal, low, medium, high, xhigh or max.",
    ),
]
ApiBaseOpt = Annotated[
    Optional[str],
    typer.Option(
        "--api-base",
        metavar="URL",
        help="Provider base URL for this call; no key needed with it if the endpoint wants none.",
    ),
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
    typer.Option("--timeout", help="Seconds each model call may take, retries included.", show_default="120"),
]
StreamOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--stream/--no-stream", help="Print the reply as it arrives.", show_default="when stdout is a terminal"
    ),
]


TURN_OPTIONS: dict[str, Any] = {
    "model": ModelOpt,
    "budget": BudgetOpt,
    "max_tokens": MaxTokensOpt,
    "temperature": TemperatureOpt,
    "top_p": TopPOpt,
    "reasoning_effort": ReasoningEffortOpt,
    "api_base": ApiBaseOpt,
    "timeout": TimeoutOpt,
    "policy": PolicyOpt,
    "recall": RecallOpt,
    "summary_model": SummaryModelOpt,
}
"""A turn's options, as `say`, `retry` and `edit` take them (TurnOptions' fields, by name)."""


def with_turn_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The command takes a turn's options (all of TURN_OPTIONS, or those named) where its
    `options` parameter stands, and receives them there as one TurnOptions, checked before the
    command runs. The options are declared once, here, for every command that takes a turn."""
    chosen = names or tuple(TURN_OPTIONS)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        # TurnOptions is imported when a turn runs, not when the CLI starts (`memchat --help`
        # loads no pydantic); the `options` parameter's annotation is replaced, never read.
        signature = inspect.signature(command, eval_str=True, locals={"TurnOptions": object})
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != "options":
                parameters.append(parameter)
                continue
            parameters += [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TURN_OPTIONS[name])
                for name in chosen
            ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in chosen}
            return command(*args, options=turn_options(**given), **kwargs)

        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return run

    return decorate


def turn_options(**given: Any) -> TurnOptions:
    """The options given on the command line (None: not given) as one checked TurnOptions."""
    from memchat.schemas import TurnOptions

    return checked(TurnOptions, given)


def thread_settings(**given: Any) -> ThreadSettings:
    """The thread settings given on the command line (None: not given) as one checked
    ThreadSettings, in which only those given are set."""
    from memchat.schemas import ThreadSettings

    return checked(ThreadSettings, given)


def checked(schema: type[BaseModel], given: dict[str, Any]) -> Any:
    """`schema` from the options given, or bad input naming the option that holds a bad value."""
    from pydantic import ValidationError

    values = {
        name: value.value if isinstance(value, Enum) else value for name, value in given.items() if value is not None
    }
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-") if problem["loc"] else "an option"
        raise InvalidInput(f"{option}: {problem['msg'].removeprefix('Value error, ')}") from None
