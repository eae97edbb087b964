"""The public schemas: what memchat takes in and gives back, with every limit on a value.

Pydantic (and SQLModel's non-table models) only: no table, no session, no storage. The faces
(CLI, server, client mode, the Python API) read and check their data with these; the table
classes in `memchat.storage.models` inherit the `*Base` classes here, so a column and the limit
on what it holds are declared once.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator, model_validator
from pydantic import Field as Bounds
from sqlalchemy import JSON, Text
from sqlmodel import Field, SQLModel

from memchat.config import MAX_REPLY_TOKENS, MAX_TEMPERATURE
from memchat.times import as_utc, utcnow

Role = Literal["system", "user", "assistant", "tool"]

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
ModelName = Annotated[str, Bounds(min_length=1, max_length=MAX_MODEL_NAME), AfterValidator(check_text)]
Temperature = Annotated[float, Bounds(ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False)]
ReplyTokens = Annotated[int, Bounds(gt=0, le=MAX_REPLY_TOKENS, strict=True)]


DEFAULT_TIMEOUT = 120.0
"""Seconds a reply may take in all, retries included (`--timeout`)."""
MAX_TIMEOUT = 86_400.0
"""A day: longer is no bound at all (and `inf` would overflow the clock arithmetic)."""

Budget = Annotated[int, Bounds(gt=0, le=MAX_BUDGET)]
Recall = Annotated[int, Bounds(ge=0, le=MAX_RECALL)]
Seconds = Annotated[float, Bounds(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)]
Wait = Annotated[float, Bounds(ge=0, le=MAX_TIMEOUT, allow_inf_nan=False)]


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

    @property
    def call_timeout(self) -> float:
        """The seconds each model call of the turn may take."""
        return DEFAULT_TIMEOUT if self.timeout is None else self.timeout


class ThreadBase(SQLModel):
    title: str = Field(default="", max_length=500)
    model: str | None = Field(default=None, max_length=200)
    system: str | None = Field(default=None, sa_type=Text)
    budget: int | None = Field(default=None, gt=0, le=MAX_BUDGET)
    policy: str = Field(default="window", max_length=16)
    recall: int = Field(default=0, ge=0, le=MAX_RECALL)
    """How many older messages matching the new one are added as excerpts (0: none)."""
    recall_embeddings: str | None = Field(default=None, max_length=200)
    """The embedding model (provider/model, through litellm) whose vectors re-rank what recall's
    words found; None: words alone. Vectors are made when recall first needs them."""
    summary_model: str | None = Field(default=None, max_length=200)
    """The model that writes summaries; None: the turn's model."""
    summary_share: float | None = Field(default=None, gt=0, le=0.9)
    """The most of the history's room a summary may take; None: DEFAULT_SUMMARY_SHARE."""
    summary_prompt: str | None = Field(default=None, sa_type=Text)
    """Instructions for the summary call; None: the prompt memchat ships."""
    api_base: str | None = Field(default=None, max_length=500)
    """The provider endpoint the thread's turns go to (a local server, say); None: the provider's
    own. Never holds a password: keys belong in the provider's variables, not the database."""
    labels: dict[str, str] | None = Field(default=None, sa_type=JSON)
    """Up to 16 key/value strings the caller keeps with the thread (the `metadata` of an OpenAI
    conversation); memchat does not read them."""


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


class ThreadSettings(ThreadBase):
    """A thread's settings, to make a thread with or to change one: a change sets only the
    fields given (`model_fields_set`), and None (JSON's null) returns a setting to its default."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "window"

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


ThreadCreate = ThreadSettings
"""The settings a thread is made with (the name the store and the importers use)."""
ThreadUpdate = ThreadSettings
"""A change of settings: the fields set are the ones changed."""


class ThreadPublic(ThreadBase):
    id: str
    created_at: datetime
    updated_at: datetime
    tenant: str | None = None
    forked_from: str | None = None
    forked_at: int | None = None
    source: str | None = None
    message_count: int = 0
    unfinished_count: int = 0
    """Of `message_count`, the messages of turns that got no complete reply (failed, cut off,
    interrupted, or in progress): kept and shown, but not part of the conversation sent."""


class MessageBase(SQLModel):
    role: str = Field(max_length=16)
    content: str = Field(sa_type=Text)
    status: str = Field(default="complete", max_length=16)
    model: str | None = Field(default=None, max_length=200)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    latency_ms: int | None = None
    context_limit: int | None = None
    """Tokens of the content later contexts send at most (the rest is cut, with a note): set on a
    reply far longer than its turn asked for; None: sent whole."""
    finish_reason: str | None = Field(default=None, max_length=16)
    """`length`: the reply stopped at its turn's max_tokens (it is complete all the same, and sent
    in later contexts). None: it ended on its own, or no one knows (older rows). Only `length` is
    kept: it is the one reason that changes how a reply reads back (OpenAI's `incomplete`,
    max_output_tokens); `stop` is the ordinary end, memchat sends no tools, and a reason some
    provider made up would be a string no face could explain."""


class ApiKeyPublic(SQLModel):
    name: str
    shown: str
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCheck(NamedTuple):
    """What a server learns of a request's key, in one query."""

    holder: str | None
    """The name (tenant) of the live key the request sent; None: no key, or not a live one."""
    any_live: bool
    ever_made: bool
    """Whether this database has had a key, revoked ones included: once it has, a request without
    a key is refused unless the operator opened the server (`memchat serve --without-keys`)."""


class MessageCreate(MessageBase):
    role: Role
    status: Status = "complete"
    finish_reason: FinishReason | None = None
    created_at: datetime | None = None


class MessagePublic(MessageBase):
    id: int
    thread_id: str
    position: int
    created_at: datetime


class SummaryBase(SQLModel):
    first_position: int
    last_position: int
    """The span of messages (positions, both ends included) the summary stands for; the
    complete messages in it were condensed, the messages themselves are left unchanged."""
    content: str = Field(sa_type=Text)
    model: str = Field(max_length=200)
    prompt: str = Field(sa_type=Text)
    """The instructions the summary was made with."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    latency_ms: int | None = None


class SummaryCreate(SummaryBase):
    created_at: datetime | None = None


class SummaryPublic(SummaryBase):
    id: int
    thread_id: str
    created_at: datetime
