"""Export and import of threads as JSON.

An exported thread's `messages` is a ChatML list (system prompt first) with per-message
metadata beside `role` and `content`, so it can go straight to `litellm.completion` once
stripped to those two keys. Summaries are not conversation: they come in their own field,
`summaries`, each with the span of message positions it stands for. Export streams a page of
messages at a time, so a thread of any length is written in flat memory. Import validates a
whole file before writing anything, counts tokens in one batch per thread, and writes through
the database's bulk insert path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Annotated, Any, Literal, TextIO

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from memchat import lease
from memchat.errors import InvalidInput, describe_validation_error
from memchat.records import MessagePublic, SummaryCreate, SummaryPublic, ThreadCreate, ThreadPublic
from memchat.schemas import MAX_INTEGER, MAX_RECALL, FinishReason, PastMoment, Policy, SafeText, Status
from memchat.settings import default_model
from memchat.storage.repository import Store, ThreadRecord
from memchat.times import as_utc
from memchat.tokens import tokenizer_for
from memchat.transfer import ImportResult, check_size, decoded, markdown

Count = Annotated[int, Field(ge=0, le=MAX_INTEGER, strict=True)]
"""A position: a JSON integer (never true/false), storable in 64 bits."""
MAX_CALL_COUNT = 2**31 - 1
"""A call's token count or latency an import may bring: what the columns hold on PostgreSQL
(32-bit), far beyond any model's, and small enough that the totals `memchat stats` and the
thread list sum over billions of rows still fit in 64 bits."""
MAX_IMPORTED_COST = 10**9
"""A call's cost an import may bring: its sums stay finite and exact enough to read."""
CallCount = Annotated[int, Field(ge=0, le=MAX_CALL_COUNT, strict=True)]
Cost = Annotated[float, Field(ge=0, le=MAX_IMPORTED_COST, allow_inf_nan=False, strict=True)]
"""A finite number: Infinity and NaN are not JSON and could not be exported again."""
ImportedRole = Literal["system", "user", "assistant"]


class Usage(BaseModel):
    prompt_tokens: CallCount | None = None
    completion_tokens: CallCount | None = None


class ExportedMessage(BaseModel):
    """One message of an import. `tokens` is accepted but recounted: counts are never trusted."""

    model_config = ConfigDict(extra="ignore")

    role: ImportedRole
    content: SafeText
    status: Status = "complete"
    created_at: PastMoment | None = None
    model: SafeText | None = None
    usage: Usage | None = None
    cost: Cost | None = None
    latency_ms: CallCount | None = None
    context_limit: Annotated[int, Field(gt=0, le=MAX_CALL_COUNT, strict=True)] | None = None
    finish_reason: FinishReason | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _replayable(cls, value: Any) -> Any:
        if value == "tool":
            raise ValueError(
                "tool messages cannot be imported: memchat keeps no tool calls, so it could not send them back correctly"
            )
        return value


class ExportedSummary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    first_position: Count
    last_position: Count
    content: SafeText
    model: SafeText
    prompt: SafeText = ""
    usage: Usage | None = None
    cost: Cost | None = None
    latency_ms: CallCount | None = None
    created_at: PastMoment | None = None


class ExportedOrigin(BaseModel):
    """Where a forked thread came from: the thread's id and the last position copied. An
    importer that makes the origin in the same import names it by its `source` instead."""

    model_config = ConfigDict(extra="ignore")

    thread: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    source: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    at: Annotated[int, Field(ge=-1, le=MAX_INTEGER, strict=True)]

    @model_validator(mode="after")
    def _named(self) -> ExportedOrigin:
        if self.thread is None and self.source is None:
            raise ValueError("forked_from names no thread: give its `thread` id (or the `source` it was imported from)")
        return self


class ExportedThread(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    title: SafeText = ""
    model: SafeText | None = None
    system: SafeText | None = None
    budget: Annotated[int, Field(gt=0, le=MAX_INTEGER, strict=True)] | None = None
    policy: Policy = "window"
    recall: Annotated[int, Field(ge=0, le=MAX_RECALL, strict=True)] = 0
    recall_embeddings: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    summary_model: SafeText | None = None
    summary_share: Annotated[float, Field(gt=0, le=0.9, strict=True)] | None = None
    summary_prompt: SafeText | None = None
    api_base: SafeText | None = None
    labels: dict[str, str] | None = None
    forked_from: ExportedOrigin | None = None
    source: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    """Where an import brought the thread from: importing a thread whose source is already here
    (for this tenant) leaves the one here as it is."""
    created_at: PastMoment | None = None
    updated_at: PastMoment | None = None
    messages: list[ExportedMessage]
    summaries: list[ExportedSummary] = []


def _timestamp(moment: datetime) -> str:
    return as_utc(moment).isoformat()


def message_json(message: MessagePublic, tokens: dict[str, int]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "role": message.role,
        "content": message.content,
        "position": message.position,
        "status": message.status,
        "created_at": _timestamp(message.created_at),
        "tokens": tokens,
    }
    if message.role == "assistant":
        item["model"] = message.model
        item["usage"] = {"prompt_tokens": message.prompt_tokens, "completion_tokens": message.completion_tokens}
        item["cost"] = message.cost
        item["latency_ms"] = message.latency_ms
    if message.context_limit is not None:
        item["context_limit"] = message.context_limit
    if message.finish_reason is not None:
        item["finish_reason"] = message.finish_reason
    return item


def _header(thread: ThreadPublic) -> dict[str, Any]:
    return {
        "id": thread.id,
        "title": thread.title,
        "model": thread.model,
        "system": thread.system,
        "budget": thread.budget,
        "policy": thread.policy,
        "recall": thread.recall,
        **({"recall_embeddings": thread.recall_embeddings} if thread.recall_embeddings else {}),
        "summary_model": thread.summary_model,
        "summary_share": thread.summary_share,
        "summary_prompt": thread.summary_prompt,
        "api_base": thread.api_base,
        "labels": thread.labels,
        "forked_from": {"thread": thread.forked_from, "at": thread.forked_at} if thread.forked_from else None,
        "source": thread.source,
        "created_at": _timestamp(thread.created_at),
        "updated_at": _timestamp(thread.updated_at),
    }


def summary_json(summary: SummaryPublic) -> dict[str, Any]:
    return {
        "first_position": summary.first_position,
        "last_position": summary.last_position,
        "content": summary.content,
        "model": summary.model,
        "prompt": summary.prompt,
        "usage": {"prompt_tokens": summary.prompt_tokens, "completion_tokens": summary.completion_tokens},
        "cost": summary.cost,
        "latency_ms": summary.latency_ms,
        "created_at": _timestamp(summary.created_at),
    }


def _summaries(store: Store, thread: ThreadPublic) -> list[dict[str, Any]]:
    return [summary_json(summary) for summary in store.summaries(thread.id)]


def _chatml(store: Store, thread: ThreadPublic) -> Iterator[dict[str, Any]]:
    if thread.system:
        yield {"role": "system", "content": thread.system}
    for message, tokens in store.export_rows(thread.id):
        yield message_json(message, tokens)


def export_thread(store: Store, ref: str) -> dict[str, Any]:
    thread = store.thread(ref)
    return {**_header(thread), "messages": list(_chatml(store, thread)), "summaries": _summaries(store, thread)}


def export_all(store: Store) -> list[dict[str, Any]]:
    return [
        {**_header(thread), "messages": list(_chatml(store, thread)), "summaries": _summaries(store, thread)}
        for thread in store.threads()
    ]


def write_thread(store: Store, ref: str, out: TextIO) -> None:
    _write(store, store.thread(ref), out, indent="")


def write_all(store: Store, out: TextIO) -> None:
    out.write("[")
    for index, thread in enumerate(store.threads()):
        out.write(",\n  " if index else "\n  ")
        _write(store, thread, out, indent="  ")
    out.write("\n]\n")


def write_markdown(store: Store, ref: str | None, out: TextIO) -> None:
    """One thread (or, with no id, every thread) as memchat's Markdown, read a page at a time."""
    for thread in [store.thread(ref)] if ref is not None else store.threads():
        markdown.write_thread(_header(thread), _chatml(store, thread), _summaries(store, thread), out)


def _write(store: Store, thread: ThreadPublic, out: TextIO, *, indent: str) -> None:
    """One thread as JSON, one message a line, written as the pages are read."""
    dump = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    out.write("{\n")
    for key, value in _header(thread).items():
        out.write(f"{indent}  {dump(key)}: {dump(value)},\n")
    out.write(f'{indent}  "messages": [')
    for index, item in enumerate(_chatml(store, thread)):
        out.write(("," if index else "") + f"\n{indent}    {dump(item)}")
    out.write(f'\n{indent}  ],\n{indent}  "summaries": [')
    for index, item in enumerate(_summaries(store, thread)):
        out.write(("," if index else "") + f"\n{indent}    {dump(item)}")
    out.write(f"\n{indent}  ]\n{indent}}}")
    if not indent:
        out.write("\n")


def parse(raw: str | bytes | Any) -> list[ThreadRecord]:
    """Validate a whole import (JSON text, or already-decoded data) into records to write."""
    if isinstance(raw, (str, bytes)):
        check_size(len(raw))
    data = _decode(raw) if isinstance(raw, (str, bytes)) else raw
    if isinstance(data, dict):
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise InvalidInput("import: expected an exported thread (a JSON object) or an array of them")
    if not items:
        raise InvalidInput("import: the array holds no threads")
    records = []
    for index, item in enumerate(items):
        where = f"thread {index + 1}: " if isinstance(data, list) else ""
        if not isinstance(item, dict):
            raise InvalidInput(f"import: {where}expected a JSON object, got {type(item).__name__}")
        try:
            records.append(_record(ExportedThread.model_validate(item)))
        except ValidationError as exc:
            raise InvalidInput(f"import: {where}{describe_validation_error(exc)}") from None
    return records


def import_threads(store: Store, raw: str | bytes | Any) -> ImportResult:
    """New threads from an export, each message counted by its thread's tokenizer in one batch,
    on a second thread while the database writes the rows (both release the GIL). A thread whose
    `source` is here already is not imported again."""
    records = parse(raw)
    with ThreadPoolExecutor(max_workers=1) as pool:
        counts = []
        for record in records:
            tokenizer = tokenizer_for(record.thread.model or default_model())
            contents = [row["content"] for row in record.messages]
            counts.append((tokenizer.name, pool.submit(tokenizer.count_batch, contents).result))
        return store.import_threads(records, counts, importer=lease.identity(), is_gone=lease.holder_is_gone)


def _decode(raw: str | bytes) -> Any:
    if isinstance(raw, bytes):
        raw = decoded(raw)
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"import: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidInput("import: the JSON is nested too deeply to be an export") from None
    except ValueError as exc:
        reason = "a number has too many digits" if "integer string conversion" in str(exc) else str(exc)
        raise InvalidInput(f"import: not valid JSON: {reason}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _record(exported: ExportedThread) -> ThreadRecord:
    """The leading system message of `messages` is the thread's system prompt, not history."""
    messages = list(exported.messages)
    system = exported.system
    if messages and messages[0].role == "system" and (system is None or messages[0].content == system):
        system = messages.pop(0).content
    for index, message in enumerate(messages):
        if message.role == "system":
            raise InvalidInput(
                f"import: messages[{index + (len(exported.messages) - len(messages))}]: a system message inside the "
                "conversation cannot be replayed; memchat keeps one system prompt per thread, sent first"
            )
    thread = ThreadCreate.model_validate(
        {
            "title": exported.title,
            "model": exported.model,
            "system": system,
            "budget": exported.budget,
            "policy": exported.policy,
            "recall": exported.recall,
            "recall_embeddings": exported.recall_embeddings,
            "summary_model": exported.summary_model,
            "summary_share": exported.summary_share,
            "summary_prompt": exported.summary_prompt,
            "api_base": exported.api_base,
            "labels": exported.labels,
        }
    )
    for summary in exported.summaries:
        if not summary.first_position <= summary.last_position < len(messages):
            raise InvalidInput(
                f"import: a summary covers messages #{summary.first_position}–#{summary.last_position}, "
                f"but the thread has {len(messages)} messages"
            )
    return ThreadRecord(
        thread=thread,
        messages=[
            {
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "created_at": as_utc(message.created_at) if message.created_at else None,
                "model": message.model,
                "prompt_tokens": message.usage.prompt_tokens if message.usage else None,
                "completion_tokens": message.usage.completion_tokens if message.usage else None,
                "cost": message.cost,
                "latency_ms": message.latency_ms,
                "context_limit": message.context_limit,
                "finish_reason": message.finish_reason,
            }
            for message in messages
        ],
        summaries=[
            SummaryCreate(
                first_position=summary.first_position,
                last_position=summary.last_position,
                content=summary.content,
                model=summary.model,
                prompt=summary.prompt,
                prompt_tokens=summary.usage.prompt_tokens if summary.usage else None,
                completion_tokens=summary.usage.completion_tokens if summary.usage else None,
                cost=summary.cost,
                latency_ms=summary.latency_ms,
                created_at=as_utc(summary.created_at) if summary.created_at else None,
            )
            for summary in exported.summaries
        ],
        created_at=as_utc(exported.created_at) if exported.created_at else None,
        updated_at=as_utc(exported.updated_at) if exported.updated_at else None,
        forked_from=exported.forked_from.thread if exported.forked_from else None,
        forked_at=exported.forked_from.at if exported.forked_from else None,
        source=exported.source,
        forked_from_source=exported.forked_from.source if exported.forked_from else None,
    )
