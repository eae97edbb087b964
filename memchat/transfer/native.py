"""Export and import of threads as JSON.

An exported thread's `messages` is a ChatML list (system prompt first) with per-message
metadata beside `role` and `content`, so a thread of plain messages can go straight to
`litellm.completion` once stripped to those two keys. Agent items carry their fields beside
them (`kind`, `parts`, `call_id`, `name`, `arguments`, `item_id`, `provider_data`; each written
only when it is not a plain message's default, so an export of plain messages reads as before).
The bytes of images and files are in the thread's `blobs` (SHA-256 → media type and base64), each
once per export: a later thread of `memchat export --all` refers to a blob an earlier one
carries, and an import reads the blobs of all its threads together. Summaries are not
conversation: they come in their own field, `summaries`, each with the span of message
positions it stands for. Export streams a page of messages at a time, so a thread of any length
is written in flat memory. Import validates a whole file before writing anything (every call
answered as OpenAI requires, every blob's hash), counts tokens in one batch per thread, and
writes through the database's bulk insert path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Annotated, Any, Literal, TextIO

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from memchat import lease
from memchat.errors import InvalidInput, describe_validation_error
from memchat.items import FILE_DETAILS, IMAGE_DETAILS
from memchat.records import MessagePublic, SummaryCreate, SummaryPublic, ThreadCreate, ThreadPublic
from memchat.schemas import (
    MAX_CALL_ID,
    MAX_INTEGER,
    MAX_MODEL_NAME,
    MAX_RECALL,
    FinishReason,
    ItemKind,
    PastMoment,
    Policy,
    SafeText,
    Status,
)
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
ImportedRole = Literal["system", "developer", "user", "assistant", "tool"]
KIND_ROLES = {
    "message": ("system", "developer", "user", "assistant"),
    "function_call": ("assistant",),
    "function_call_output": ("tool",),
    "reasoning": ("assistant",),
}
"""The roles each kind of item is stored with (`records.MessageBase.kind`)."""
CallId = Annotated[str, Field(min_length=1, max_length=MAX_CALL_ID)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
MediaType = Annotated[str, Field(min_length=1, max_length=200)]
Size = Annotated[int, Field(ge=0, le=MAX_INTEGER, strict=True)]


class Usage(BaseModel):
    prompt_tokens: CallCount | None = None
    completion_tokens: CallCount | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "refusal"]
    text: SafeText


class StoredPart(BaseModel):
    """An image or a file as a message keeps it: a reference to a blob of the export's `blobs`
    (with its media type and size), or a URL."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["image", "file"]
    blob: Sha256 | None = None
    url: Annotated[str, Field(pattern=r"^https?://", max_length=2**16)] | None = None
    media_type: MediaType | None = None
    size: Size | None = None
    detail: str | None = None
    filename: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME)] | None = None

    @model_validator(mode="after")
    def _whole(self) -> StoredPart:
        if (self.blob is None) == (self.url is None):
            raise ValueError(f"an {self.type} part refers to one blob or one URL")
        if self.blob is not None and (self.media_type is None or self.size is None):
            raise ValueError(f"an {self.type} part with a blob gives its media_type and size")
        details = IMAGE_DETAILS if self.type == "image" else FILE_DETAILS
        if self.detail is not None and self.detail not in details:
            raise ValueError(f"detail must be one of {', '.join(details)}, not {self.detail!r}")
        if self.type == "image" and self.filename is not None:
            raise ValueError("an image part has no filename")
        return self


Part = Annotated[TextPart | StoredPart, Field(discriminator="type")]


class ExportedBlob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    media_type: MediaType
    data: str
    """The bytes, base64."""


class ExportedMessage(BaseModel):
    """One item of an import. `tokens` is accepted but recounted: counts are never trusted."""

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
    position: Count | None = None
    """Where the item was in the thread exported (read only to tell an item from the prompt)."""
    kind: ItemKind = "message"
    parts: list[Part] | None = None
    call_id: CallId | None = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME)] | None = None
    arguments: SafeText | None = None
    item_id: CallId | None = None
    provider_data: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _tool_message(cls, value: Any) -> Any:
        """A ChatML `tool` message (`tool_call_id`) is the output of the call it names."""
        if isinstance(value, dict) and value.get("role") == "tool" and "kind" not in value:
            value = {**value, "kind": "function_call_output"}
            if "call_id" not in value and "tool_call_id" in value:
                value["call_id"] = value["tool_call_id"]
        return value

    @model_validator(mode="after")
    def _item(self) -> ExportedMessage:
        """Each kind with the role and fields it is stored with, so that the thread sends back
        what it received."""
        roles = KIND_ROLES[self.kind]
        if self.role not in roles:
            raise ValueError(f"a {self.kind} item has the role {' or '.join(roles)}, not {self.role}")
        calling = self.kind in ("function_call", "function_call_output")
        if calling and self.call_id is None:
            raise ValueError(f"a {self.kind} item needs the call_id that pairs a call with its output")
        if not calling and self.call_id is not None:
            raise ValueError(f"a {self.kind} item has no call_id")
        if self.kind == "function_call":
            if self.name is None or self.arguments is None:
                raise ValueError("a function_call item needs its tool's name and its arguments")
            try:
                json.loads(self.arguments, parse_constant=_refuse_constant)
            except ValueError as exc:
                raise ValueError(f"a function_call's arguments are not JSON ({exc})") from None
            if self.parts is not None:
                raise ValueError("a function_call item has no parts")
        elif self.arguments is not None or (self.name is not None and self.kind != "function_call_output"):
            raise ValueError(
                f"a {self.kind} item has no arguments{'' if self.kind == 'function_call_output' else ' or name'} "
                "(those are a function_call's; an output may name its call's tool)"
            )
        if self.kind == "reasoning" and self.parts is not None:
            raise ValueError("a reasoning item has no parts")
        return self


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
    blobs: dict[Sha256, ExportedBlob] = {}


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
    if message.kind != "message":
        item["kind"] = message.kind
    for field in ITEM_FIELDS:
        value = getattr(message, field)
        if value is not None:
            item[field] = value
    return item


ITEM_FIELDS = ("parts", "call_id", "name", "arguments", "item_id", "provider_data")
"""An item's fields beside a plain message's, written when set."""


def blobs_json(store: Store, hashes: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Each blob asked for as an export carries it, read one at a time (an image may be MiBs)."""
    for sha in hashes:
        media_type, data = store.blobs([sha])[sha]
        yield sha, {"media_type": media_type, "data": base64.b64encode(data).decode("ascii")}


def _referenced_parts(messages: Sequence[ExportedMessage]) -> list[str]:
    return list(
        dict.fromkeys(
            part.blob
            for message in messages
            for part in message.parts or ()
            if isinstance(part, StoredPart) and part.blob is not None
        )
    )


def _referenced(messages: Sequence[dict[str, Any]] | Iterator[dict[str, Any]]) -> list[str]:
    """The blobs the messages' parts refer to, in the order first referred to."""
    found: dict[str, None] = {}
    for message in messages:
        for part in message.get("parts") or ():
            if part.get("blob"):
                found[part["blob"]] = None
    return list(found)


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
    return _exported(store, store.thread(ref), set())


def export_all(store: Store) -> list[dict[str, Any]]:
    written: set[str] = set()
    return [_exported(store, thread, written) for thread in store.threads()]


def _exported(store: Store, thread: ThreadPublic, written: set[str]) -> dict[str, Any]:
    """The thread whole, with the blobs it refers to that no earlier thread of the export carries."""
    messages = list(_chatml(store, thread))
    exported = {**_header(thread), "messages": messages, "summaries": _summaries(store, thread)}
    new = [sha for sha in _referenced(messages) if sha not in written]
    if new:
        written.update(new)
        exported["blobs"] = dict(blobs_json(store, new))
    return exported


def write_thread(store: Store, ref: str, out: TextIO) -> None:
    _write(store, store.thread(ref), out, indent="", written=set())


def write_all(store: Store, out: TextIO) -> None:
    out.write("[")
    written: set[str] = set()
    for index, thread in enumerate(store.threads()):
        out.write(",\n  " if index else "\n  ")
        _write(store, thread, out, indent="  ", written=written)
    out.write("\n]\n")


def write_markdown(store: Store, ref: str | None, out: TextIO) -> None:
    """One thread (or, with no id, every thread) as memchat's Markdown, read a page at a time;
    each thread's images and files follow it, so that each transcript is whole."""

    def blob(sha: str) -> tuple[str, bytes]:
        return store.blobs([sha])[sha]

    for thread in [store.thread(ref)] if ref is not None else store.threads():
        markdown.write_thread(_header(thread), _chatml(store, thread), _summaries(store, thread), out, blob=blob)


def _write(store: Store, thread: ThreadPublic, out: TextIO, *, indent: str, written: set[str]) -> None:
    """One thread as JSON, one message a line, written as the pages are read, then the blobs
    its messages refer to that `written` (those an earlier thread of the export carries) lacks."""
    dump = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    out.write("{\n")
    for key, value in _header(thread).items():
        out.write(f"{indent}  {dump(key)}: {dump(value)},\n")
    out.write(f'{indent}  "messages": [')
    referenced: dict[str, None] = {}
    for index, item in enumerate(_chatml(store, thread)):
        referenced.update(dict.fromkeys(_referenced([item])))
        out.write(("," if index else "") + f"\n{indent}    {dump(item)}")
    out.write(f'\n{indent}  ],\n{indent}  "summaries": [')
    for index, item in enumerate(_summaries(store, thread)):
        out.write(("," if index else "") + f"\n{indent}    {dump(item)}")
    out.write(f"\n{indent}  ]")
    new = [sha for sha in referenced if sha not in written]
    if new:
        written.update(new)
        out.write(f',\n{indent}  "blobs": {{')
        for index, (sha, blob) in enumerate(blobs_json(store, new)):
            out.write(("," if index else "") + f"\n{indent}    {dump(sha)}: {dump(blob)}")
        out.write(f"\n{indent}  }}")
    out.write(f"\n{indent}}}")
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
    exported: list[tuple[str, ExportedThread]] = []
    for index, item in enumerate(items):
        where = f"thread {index + 1}: " if isinstance(data, list) else ""
        if not isinstance(item, dict):
            raise InvalidInput(f"import: {where}expected a JSON object, got {type(item).__name__}")
        try:
            exported.append((where, ExportedThread.model_validate(item)))
        except ValidationError as exc:
            raise InvalidInput(f"import: {where}{describe_validation_error(exc)}") from None
    blobs = _blobs(exported)
    return [_record(thread, where, blobs) for where, thread in exported]


def _blobs(exported: Sequence[tuple[str, ExportedThread]]) -> dict[str, tuple[str, bytes]]:
    """The blobs of every thread of the import (an export carries each once), decoded, each
    checked against its hash."""
    blobs: dict[str, tuple[str, bytes]] = {}
    for where, thread in exported:
        for sha, blob in thread.blobs.items():
            try:
                data = base64.b64decode(blob.data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"import: {where}blobs.{sha}: the data is not base64") from None
            if hashlib.sha256(data).hexdigest() != sha:
                raise InvalidInput(f"import: {where}blobs.{sha}: the data's SHA-256 is not the blob's name")
            blobs[sha] = (blob.media_type, data)
    return blobs


def _check_items(messages: Sequence[ExportedMessage], offset: int, where: str, blobs: Mapping) -> None:
    """Every image or file has its blob (its size and type as the blob's), and the conversation
    sent (the complete items) answers every call before anything else, with one output, as
    OpenAI requires of a history (`turn.check_pairing` holds a turn to the same)."""
    waiting: dict[str, int] = {}
    for index, message in enumerate(messages):
        path = f"import: {where}messages[{index + offset}]"
        for number, part in enumerate(message.parts or ()):
            if isinstance(part, StoredPart) and part.blob is not None:
                if part.blob not in blobs:
                    raise InvalidInput(f"{path}.parts[{number}]: blob {part.blob} is not in the import's `blobs`")
                media_type, data = blobs[part.blob]
                if part.size != len(data):
                    raise InvalidInput(
                        f"{path}.parts[{number}]: the size {part.size} is not its blob's ({len(data)} bytes)"
                    )
        if message.status != "complete":
            continue
        if message.kind == "function_call":
            if message.call_id in waiting:
                raise InvalidInput(f"{path}: call_id {message.call_id} is already a call waiting for its output")
            waiting[message.call_id] = index
        elif message.kind == "function_call_output":
            if waiting.pop(message.call_id, None) is None:
                raise InvalidInput(
                    f"{path}: No tool call found for function call output with call_id {message.call_id}."
                )
        elif waiting:
            first = min(waiting, key=waiting.__getitem__)
            raise InvalidInput(
                f"{path}: No tool output found for function call {first} (messages[{waiting[first] + offset}]): "
                "a call's output must follow it before anything else"
            )


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


def _record(exported: ExportedThread, where: str, blobs: Mapping[str, tuple[str, bytes]]) -> ThreadRecord:
    """The leading system message of `messages` is the thread's system prompt, not history,
    unless it has a `position`: an export gives one to every item of the thread and none to the
    prompt, so a thread with no prompt may begin with a system message item."""
    messages = list(exported.messages)
    system = exported.system
    first = messages[0] if messages else None
    if (
        first is not None
        and first.role == "system"
        and first.position is None
        and first.parts is None
        and (system is None or first.content == system)
    ):
        system = messages.pop(0).content
    _check_items(messages, len(exported.messages) - len(messages), where, blobs)
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
                "kind": message.kind,
                "parts": [part.model_dump(exclude_none=True) for part in message.parts]
                if message.parts is not None
                else None,
                "call_id": message.call_id,
                "name": message.name,
                "arguments": message.arguments,
                "item_id": message.item_id,
                "provider_data": message.provider_data,
            }
            for message in messages
        ],
        blobs={sha: blobs[sha] for sha in _referenced_parts(messages)},
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
