"""What memchat takes in, with every limit on a value: the options of a turn, the settings of a
thread, the types and checks of the text and numbers they hold.

Pydantic only (no SQLAlchemy, no storage): every face checks its input with these, the CLI
in client mode too, which must start without the database layer. The records memchat gives
back (threads, messages, summaries) are `memchat.records`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memchat.config import MAX_REPLY_TOKENS, MAX_TEMPERATURE
from memchat.errors import InvalidInput, describe_validation_error
from memchat.times import as_utc, utcnow

Role = Literal["system", "user", "assistant", "tool", "developer"]

ItemKind = Literal["message", "function_call", "function_call_output", "reasoning"]
"""The kinds of item a thread holds (see `MessageBase.kind`)."""
MAX_CALL_ID = 200
"""The longest call id or item id kept (OpenAI's are at most 64 characters; other providers'
ids pass through litellm and may be longer)."""

ToolOutputs = Literal["mask", "keep"]
"""What older tool outputs cost a request: `mask`, a short stub in their place (the call and
the newest outputs kept whole); `keep`, sent whole like any message."""
MASK_KEEP_STEPS = 3
"""Under `mask`, the outputs of the newest steps of an agent's run that are sent whole (a step:
the model's calls and their outputs)."""

Policy = Literal["window", "summary"]
"""`window`: history that does not fit the budget is left out; `summary`: it is condensed into a
stored summary sent after the system prompt."""

DEFAULT_SUMMARY_SHARE = 0.25
MAX_RECALL = 50
MAX_BUDGET = 2**31 - 1
"""The largest budget a thread keeps: what an integer column holds on every backend."""

FinishReason = Literal["length"]
"""The provider's reasons for ending a reply that a message keeps (see `MessageBase.finish_reason`)."""

Status = Literal["complete", "pending", "failed", "partial", "undone"]
"""`undone`: taken out of the thread's memory (`memchat undo`, an item deleted over HTTP), never deleted:
shown, exported, but in no later context, recall or summary."""
"""`pending`: a user message whose reply has not arrived yet; `failed`: its turn got no reply;
`partial`: a reply cut off before it finished. Only `complete` messages enter later contexts."""


MAX_INTEGER = 2**63 - 1
"""The largest integer both databases store (a signed 64-bit column)."""
FUTURE_TOLERANCE = timedelta(days=1)
"""How far ahead of this machine's clock a stored moment may be (clocks differ a little)."""


def check_text(value: str) -> str:
    """Text every backend stores and gives back unchanged: no NUL character (PostgreSQL refuses
    it, and SQLite would cut the text there for some readers) and no lone surrogate (what
    invalid UTF-8 in a command-line argument becomes, and what JSON's \ud800 means)."""
    if "\x00" in value:
        raise ValueError("contains a NUL character, which memchat does not store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate, as invalid UTF-8 becomes)") from None
    return value


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""What `check_text` refuses: NUL, and surrogates (in a str, any surrogate is a lone one)."""


def storable(value: str) -> tuple[str, int]:
    """`value` with what `check_text` refuses replaced by U+FFFD, and how many characters were:
    for text memchat did not write and must not lose, a model's reply (it has been paid for)."""
    return UNSTORABLE.subn("\ufffd", value)


def check_moment(value: datetime) -> datetime:
    if as_utc(value) > utcnow() + FUTURE_TOLERANCE:
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


SafeText = Annotated[str, AfterValidator(check_text)]
PastMoment = Annotated[datetime, AfterValidator(check_moment)]

MAX_MODEL_NAME = 200
MAX_TITLE = 500
TITLE_FROM_MESSAGE = 32
"""The most characters of its first user message a thread given no title takes as its title
(as `llm` names a conversation)."""
MAX_ENDPOINT = 500
MAX_SOURCE = 300
"""A thread's `source`: where an import brought it from, or the conversation it holds for another system."""
MAX_SUMMARY_SHARE = 0.9
ModelName = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME), AfterValidator(check_text)]
Temperature = Annotated[float, Field(ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False)]
TopP = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
"""Nucleus sampling: the share of probability mass the model samples from (OpenAI's bounds)."""
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
"""How hard a reasoning model thinks: the efforts litellm's `completion` takes as
`reasoning_effort` (its `REASONING_EFFORT`, which a test compares), leaving out its own
`default`, which asks for what leaving the option out asks for. Which of them a model takes is
litellm's to say, when the turn is checked."""
ReplyTokens = Annotated[int, Field(gt=0, le=MAX_REPLY_TOKENS, strict=True)]


DEFAULT_TIMEOUT = 120.0
"""Seconds a reply may take in all, retries included (`--timeout`)."""
MAX_TIMEOUT = 86_400.0
"""A day: longer is no bound at all (and `inf` would overflow the clock arithmetic)."""

Budget = Annotated[int, Field(gt=0, le=MAX_BUDGET)]
Recall = Annotated[int, Field(ge=0, le=MAX_RECALL)]
Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
Wait = Annotated[float, Field(ge=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
SummaryShare = Annotated[float, Field(gt=0, le=MAX_SUMMARY_SHARE, allow_inf_nan=False)]


class TurnOptions(BaseModel):
    """A turn's options: what it sends and stores besides its messages, and this turn's overrides
    of the thread's settings. Every face builds one (the CLI's options, the server's request
    bodies, `Memory.say`'s keywords) and it is checked here, once, before the thread is touched
    or the model called (a model name the reply's row cannot hold would otherwise be found out
    only after a paid call). None: the thread's setting, else memchat's default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName | None = None
    budget: Budget | None = None
    """The most prompt tokens sent."""
    max_tokens: ReplyTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    reasoning_effort: ReasoningEffort | None = None
    api_base: SafeText | None = None
    """The provider endpoint of this turn's model calls."""
    timeout: Seconds | None = None
    """Seconds each model call may take, retries included (None: DEFAULT_TIMEOUT)."""
    policy: Policy | None = None
    recall: Recall | None = None
    summary_model: ModelName | None = None
    system: SafeText | None = None
    """This turn's system prompt, in place of the thread's (the `instructions` of a response)."""
    wait: Wait | None = None
    """How long to wait for another turn on the thread to end (None: as long as a turn may take)."""
    tools: list[dict] | None = None
    """Function tools the model may call, in Chat Completions' shape (`{"type": "function",
    "function": {"name", "description", "parameters"}}`): sent with the turn, counted in its
    budget. memchat never runs a tool: the reply's calls go back to the caller."""
    tool_choice: Literal["none", "auto", "required"] | dict | None = None
    """Whether the model must, may or must not call a tool, or which one (Chat Completions' form)."""
    parallel_tool_calls: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _function_tools(cls, values: Any) -> Any:
        """The tools and the choice among them as `memchat.items` checks every face's (Chat
        Completions' shape): function tools only, named as providers take them, a choice naming
        one of them; a refusal names the field."""
        if not isinstance(values, dict) or (values.get("tools") is None and values.get("tool_choice") is None):
            return values
        from memchat.items import check_tool_choice, check_tools

        tools = check_tools(values.get("tools") or [], shape="chat")
        choice = check_tool_choice(values.get("tool_choice"), tools, shape="chat")
        return {**values, "tools": tools or None, "tool_choice": choice}

    @property
    def call_timeout(self) -> float:
        """The seconds each model call of the turn may take."""
        return DEFAULT_TIMEOUT if self.timeout is None else self.timeout


TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A tool's name as providers take it (OpenAI's rule): what `memchat.items.check_tools` allows."""


def title_from_message(text: str) -> str:
    """A title for a thread nobody named, from its first user message, as `llm` names a
    conversation: one line (each run of whitespace one space), trimmed, at most
    TITLE_FROM_MESSAGE characters (a longer message cut, ending in "…"), so `memchat list` tells
    threads apart at a glance. Only the opening words are read, whatever the message's length."""
    words: list[str] = []
    length = -1
    for word in re.finditer(r"\S+", text):
        words.append(word.group())
        length += 1 + len(words[-1])
        if length > TITLE_FROM_MESSAGE:
            break
    line = " ".join(words)
    if len(line) <= TITLE_FROM_MESSAGE:
        return line
    return line[: TITLE_FROM_MESSAGE - 1].rstrip() + "…"


TEXT_SETTINGS = ("title", "model", "system", "summary_model", "summary_prompt", "api_base", "recall_embeddings")


def _checked_setting(value: str | None) -> str | None:
    return None if value is None else check_text(value)


def check_endpoint(value: str | None) -> str | None:
    """A provider URL to store: no password in it (it would sit in the database in clear)."""
    if not value or not value.strip():
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.password is not None:
        raise ValueError("holds a password: memchat stores no secrets; put the key in the provider's variable")
    return value.strip()


MAX_LABELS = 16
MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 512


def check_labels(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits on metadata: at most 16 pairs, keys up to 64 characters, values up to 512."""
    if not value:
        return None
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} pairs, not {len(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ValueError("keys and values must be strings")
        if not key or len(key) > MAX_LABEL_KEY:
            raise ValueError(f"key {key[:80]!r} must have 1 to {MAX_LABEL_KEY} characters")
        if len(item) > MAX_LABEL_VALUE:
            raise ValueError(f"the value of {key!r} is over {MAX_LABEL_VALUE} characters")
        check_text(key)
        check_text(item)
    return value


class ThreadSettings(BaseModel):
    """A thread's settings, to make a thread with or to change one: a change sets only the
    fields given (`model_fields_set`), and None (JSON's null) returns a setting to its default."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=MAX_TITLE)
    model: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    system: str | None = None
    budget: Budget | None = None
    policy: Policy = "window"
    recall: Recall = 0
    """How many older messages matching the new one are added as excerpts (0: none)."""
    recall_embeddings: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    """The embedding model (provider/model, through litellm) whose vectors re-rank what recall's
    words found; None: words alone. Vectors are made when recall first needs them."""
    summary_model: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    """The model that writes summaries; None: the turn's model."""
    summary_share: SummaryShare | None = None
    """The most of the history's room a summary may take; None: DEFAULT_SUMMARY_SHARE."""
    summary_prompt: str | None = None
    """Instructions for the summary call; None: the prompt memchat ships."""
    api_base: str | None = Field(default=None, max_length=MAX_ENDPOINT)
    """The provider endpoint the thread's turns go to (a local server, say); None: the provider's
    own. Never holds a password: keys belong in the provider's variables, not the database."""
    labels: dict[str, str] | None = None
    """Up to 16 key/value strings the caller keeps with the thread (the `metadata` of an OpenAI
    conversation); memchat does not read them."""
    tool_outputs: ToolOutputs = "mask"
    """What tool outputs older than the newest MASK_KEEP_STEPS steps cost a request: `mask` sends a
    stub naming the tool, the output's size and where to read it (observation masking, as good
    as summarising for coding agents at half the cost: Lindenbauer et al. 2025); `keep` sends them
    whole. A thread without tool calls is the same either way."""

    @model_validator(mode="before")
    @classmethod
    def _none_is_the_default(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        fields = cls.model_fields
        return {key: fields[key].default if value is None and key in fields else value for key, value in values.items()}

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_labels(value)

    @field_validator(*TEXT_SETTINGS)
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return _checked_setting(value)

    @field_validator("system", "summary_prompt")
    @classmethod
    def _blank_prompt_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @field_validator("model", "summary_model", "recall_embeddings")
    @classmethod
    def _empty_model_is_the_default(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("api_base")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return check_endpoint(value)


class KeyCheck(NamedTuple):
    """What a server learns of a request's key, in one query."""

    holder: str | None
    """The name (tenant) of the live key the request sent; None: no key, or not a live one."""
    any_live: bool
    ever_made: bool
    """Whether this database has had a key, revoked ones included: once it has, a request without
    a key is refused unless the operator opened the server (`memchat serve --without-keys`)."""


def options_with(options: TurnOptions | None, given: dict[str, Any]) -> TurnOptions:
    """A turn's options: `options`, with the fields given as keywords set over it, checked."""
    if not given:
        return options or TurnOptions()
    return _checked(TurnOptions, {**(options.model_dump(exclude_unset=True) if options else {}), **given})


def settings_with(settings: ThreadSettings | None, given: dict[str, Any]) -> ThreadSettings:
    """A thread's settings: `settings`, with the fields given as keywords set over it, checked
    (only the fields given count as set, so a change changes those alone)."""
    unknown = set(given) - set(ThreadSettings.model_fields)
    if unknown:
        raise InvalidInput(f"unknown thread setting: {', '.join(sorted(unknown))}")
    if settings is not None and not given:
        return settings
    return _checked(ThreadSettings, {**(settings.model_dump(exclude_unset=True) if settings else {}), **given})


def _checked(schema: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None
