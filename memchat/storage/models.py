"""The table classes: the only persistent state. Each inherits its columns from the record it
stores (`memchat.records`), in SQLModel's Base / table / Create / Public pattern. The schema
they describe is created and changed only by the Alembic revisions in `migrations/`; tests
check that the two agree.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import JSON, Index, LargeBinary, Text, UniqueConstraint, func, literal, text
from sqlmodel import Field, SQLModel

from memchat.records import MessageBase, SummaryBase, ThreadBase
from memchat.times import utcnow


def new_thread_id() -> str:
    return secrets.token_hex(6)


class Thread(SQLModel, ThreadBase, table=True):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_updated_at", "updated_at"),
        Index(
            "uq_threads_tenant_source",
            func.coalesce(text("tenant"), literal("")),
            "source",
            unique=True,
            sqlite_where=text("source IS NOT NULL"),
            postgresql_where=text("source IS NOT NULL"),
        ),
        Index(
            "ix_threads_inheriting",
            "forked_from",
            sqlite_where=text("inherits_through IS NOT NULL"),
            postgresql_where=text("inherits_through IS NOT NULL"),
        ),
    )

    id: str = Field(default_factory=new_thread_id, primary_key=True, max_length=32)
    system: str | None = Field(default=None, sa_type=Text)
    summary_prompt: str | None = Field(default=None, sa_type=Text)
    labels: dict[str, str] | None = Field(default=None, sa_type=JSON)
    tool_outputs: str = Field(default="mask", max_length=8, sa_column_kwargs={"server_default": "mask"})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    import_holder: str | None = Field(default=None, max_length=200)
    """Set while an import writes the thread (hidden until the whole import is written): when
    it began and which process writes it."""
    tenant: str | None = Field(default=None, max_length=64, index=True)
    """The API key (by name) whose conversation this is: over HTTP, only that key sees it. None:
    made by the operator (the CLI or the Python API on the database itself)."""
    forked_from: str | None = Field(default=None, max_length=32)
    """The thread this one was forked from (its id stays once that thread is deleted)."""
    forked_at: int | None = None
    """The last position taken from `forked_from` (-1: none, only its settings)."""
    inherits_through: int | None = None
    """Positions up to this one are read from `forked_from` (its own messages there, or what it
    inherits in turn), none of them stored here; None: every message is the thread's own
    (revision 0012). Only ever lowered, by a copy on write, then None."""
    source: str | None = Field(default=None, max_length=300)
    """The conversation an import brought this thread from (`llm:<id>`, `chatgpt:<id>`, ...):
    one thread a source for each tenant, so importing the same history twice makes no copies."""
    history_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Raised by every append and (a database trigger, revision 0009) every status change of the
    thread's messages: a copy of the history made at one version is exact while it stays."""


class Message(SQLModel, MessageBase, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("thread_id", "position", name="uq_messages_thread_position"),
        Index(
            "ix_messages_unfinished",
            "thread_id",
            sqlite_where=text("status != 'complete'"),
            postgresql_where=text("status != 'complete'"),
        ),
        Index(
            "ix_messages_copied_from",
            "copied_from",
            sqlite_where=text("copied_from IS NOT NULL"),
            postgresql_where=text("copied_from IS NOT NULL"),
        ),
        Index(
            "ix_messages_copies",
            "thread_id",
            sqlite_where=text("copied_from IS NOT NULL"),
            postgresql_where=text("copied_from IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE", max_length=32)
    position: int
    content: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    kind: str = Field(default="message", max_length=24, sa_column_kwargs={"server_default": "message"})
    parts: list[dict] | None = Field(default=None, sa_type=JSON(none_as_null=True))
    arguments: str | None = Field(default=None, sa_type=Text)
    provider_data: dict | None = Field(default=None, sa_type=JSON(none_as_null=True))
    copied_from: int | None = None
    """A fork's copy: the message whose full-text index entry stands for this one (always an
    indexed original, however many forks deep); None: indexed itself (revision 0010)."""


class Blob(SQLModel, table=True):
    """An image's or a file's bytes, stored once per content: a message part refers to its
    SHA-256, so the same image sent a hundred times is one row. A blob no message refers to any
    more is removed by `memchat vacuum`."""

    __tablename__ = "blobs"

    sha256: str = Field(primary_key=True, max_length=64)
    media_type: str = Field(max_length=200)
    size: int
    data: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = Field(default_factory=utcnow)


class SchemaInfo(SQLModel, table=True):
    """Facts about the database itself: `memchat_version`, the memchat that last migrated it."""

    __tablename__ = "schema_info"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)


class MessageTokens(SQLModel, table=True):
    """A message's token count by one tokenizer, computed once, when first needed."""

    __tablename__ = "message_tokens"

    message_id: int = Field(foreign_key="messages.id", ondelete="CASCADE", primary_key=True)
    tokenizer: str = Field(primary_key=True, max_length=200)
    tokens: int


class MessageVector(SQLModel, table=True):
    """A message's embedding by one model, unit length, as float32 bytes (`memchat.vectors`):
    made once, when recall first scores the message with that model (or `memchat embed`)."""

    __tablename__ = "message_vectors"

    message_id: int = Field(foreign_key="messages.id", ondelete="CASCADE", primary_key=True)
    model: str = Field(primary_key=True, max_length=200)
    vector: bytes = Field(sa_type=LargeBinary)


class ThreadLease(SQLModel, table=True):
    """Which process is taking a turn on a thread, and until when: turns on one thread run one
    at a time, and a lease left by a process that died lapses."""

    __tablename__ = "thread_leases"

    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE", primary_key=True, max_length=32)
    holder: str = Field(max_length=200)
    expires_at: datetime


class ApiKey(SQLModel, table=True):
    """A key for `memchat serve`: its name is its tenant. Only a hash of the key is stored (the
    key itself is shown once, when made); a revoked key stays, so its name is never reused."""

    __tablename__ = "api_keys"

    name: str = Field(primary_key=True, max_length=64)
    key_hash: str = Field(max_length=64, unique=True)
    """SHA-256 of the key, hex: a key is 256 random bits, so no slow hash is needed."""
    shown: str = Field(max_length=16)
    """The key's first characters, to recognise it in `memchat key list`."""
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class Summary(SQLModel, SummaryBase, table=True):
    """A summary of a span of a thread, kept beside the messages it condenses: each new summary
    folds the previous one and the messages after it, and the newest one is the thread's current."""

    __tablename__ = "summaries"
    __table_args__ = (Index("ix_summaries_thread_id", "thread_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    content: str = Field(sa_type=Text)
    prompt: str = Field(sa_type=Text)
    thread_id: str = Field(foreign_key="threads.id", ondelete="CASCADE", max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
