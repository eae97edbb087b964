"""The records memchat gives back and stores (threads, messages, summaries, keys), in SQLModel's
Base / Create / Public pattern: the table classes in `memchat.storage.models` inherit the
`*Base` classes here, so a field is declared once (a column's storage type, TEXT or JSON, is the
table's to say). The classes are plain pydantic, so a face that only holds records (the client
of `memchat serve`) loads neither SQLModel nor SQLAlchemy; the limits on what a caller may set
are `memchat.schemas`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memchat.schemas import (
    MAX_CALL_ID,
    MAX_ENDPOINT,
    MAX_MODEL_NAME,
    MAX_TITLE,
    FinishReason,
    ItemKind,
    Role,
    Status,
    ThreadSettings,
)

ThreadCreate = ThreadSettings
"""The settings a thread is made with (the name the store and the importers use)."""
ThreadUpdate = ThreadSettings
"""A change of a thread's settings: the fields set are the ones changed."""


class Record(BaseModel):
    """A record read from a table row (by attribute) or from JSON."""

    model_config = ConfigDict(from_attributes=True)


class ThreadBase(Record):
    """A thread's settings as stored: the columns of `ThreadSettings`, whose limits a setting
    passes before it is written (see there for what each means)."""

    title: str = Field(default="", max_length=MAX_TITLE)
    model: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    system: str | None = None
    budget: int | None = None
    policy: str = Field(default="window", max_length=16)
    recall: int = 0
    recall_embeddings: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    summary_model: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    summary_share: float | None = None
    summary_prompt: str | None = None
    api_base: str | None = Field(default=None, max_length=MAX_ENDPOINT)
    labels: dict[str, str] | None = None
    tool_outputs: str = Field(default="mask", max_length=8)


class ThreadPublic(ThreadBase):
    id: str
    created_at: datetime
    updated_at: datetime
    tenant: str | None = None
    forked_from: str | None = None
    forked_at: int | None = None
    source: str | None = None
    message_count: int = 0
    """Every message of the thread, as `memchat show` lists them (undone ones, and those a fork
    inherits, included): the number `memchat list` shows."""
    unfinished_count: int = 0
    """Of `message_count`, the messages of turns that got no complete reply (failed, cut off,
    interrupted, or in progress): kept and shown, but not part of the conversation sent;
    `memchat list` shows them as `(N unanswered)`."""


class MessageBase(Record):
    role: str = Field(max_length=16)
    content: str
    status: str = Field(default="complete", max_length=16)
    model: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
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
    kind: str = Field(default="message", max_length=24)
    """What the item is, in OpenAI's terms (`memchat.items` has the shapes): `message` (role
    user, assistant, system or developer), `function_call` (role assistant: the model asks the
    caller to run a tool), `function_call_output` (role tool: what the caller's tool gave back)
    or `reasoning` (role assistant: what a reasoning model returned besides its answer). A
    thread is one ordered sequence of items of every kind."""
    parts: list[dict] | None = None
    """A message's (or a tool output's) content as parts, when it is more than text: text,
    images and files, each image or file a reference to a blob stored once per content
    (`{"type": "image", "blob": <sha256>, ...}`, see `memchat.items`). None: `content` is the
    whole content. `content` always holds the item's text, for search, recall and summaries."""
    call_id: str | None = Field(default=None, max_length=MAX_CALL_ID)
    """A function call and its outputs: the id that pairs them (`call_...`, or `toolu_...`)."""
    name: str | None = Field(default=None, max_length=MAX_MODEL_NAME)
    """A function call's tool name."""
    arguments: str | None = None
    """A function call's arguments: a JSON text, kept exactly as the model or client wrote it."""
    item_id: str | None = Field(default=None, max_length=MAX_CALL_ID)
    """The item's id in OpenAI's protocols (`fc_...`, `rs_...`, `msg_...`), as given or made."""
    provider_data: dict | None = None
    """What only the provider that made the item reads back: a reasoning item's
    `encrypted_content`, Anthropic's signed `thinking_blocks`, and the provider family
    (`family`) they may be sent back to; never sent to another family."""


class ApiKeyPublic(Record):
    name: str
    shown: str
    created_at: datetime
    revoked_at: datetime | None = None


class MessageCreate(MessageBase):
    role: Role
    kind: ItemKind = "message"
    status: Status = "complete"
    finish_reason: FinishReason | None = None
    created_at: datetime | None = None


class MessagePublic(MessageBase):
    id: int
    thread_id: str
    position: int
    created_at: datetime


class SummaryBase(Record):
    first_position: int
    last_position: int
    """The span of messages (positions, both ends included) the summary stands for; the
    complete messages in it were condensed, the messages themselves are left unchanged."""
    content: str
    model: str = Field(max_length=MAX_MODEL_NAME)
    prompt: str
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
