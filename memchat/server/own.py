"""memchat's own API, under /memchat/v1: what the OpenAI protocol has no words for, so that every
CLI command has an HTTP equivalent (same names, same JSON as the CLI's `--json`):

    memchat list / new / show / set / rename / rm   GET|POST /threads, GET|PATCH|DELETE /threads/{id}, GET /threads/{id}/messages
    memchat say / retry / accept / undo             POST /threads/{id}/say | /retry | /accept | /undo
      (say's `items`: tool outputs, images and files, as Responses input items)
    memchat fork / edit                             POST /threads/{id}/fork | /edit
    memchat context                                 POST /threads/{id}/context
    memchat summary [--all] [--rebuild]             GET /threads/{id}/summaries, POST /threads/{id}/summaries/rebuild
    memchat embed                                   POST /threads/{id}/embed
    memchat search                                  GET /search?q=...
    memchat export [--all] / import                 GET /threads/{id}/export, GET /export (streamed), POST /import

A key sees and changes only its own threads here too; search and export never cross tenants.
Operator-only commands (`memchat key`, `memchat db`, `memchat config`) have no HTTP form.

These endpoints are `memchat.interface.ConversationMemory` over HTTP: `memchat.remote.RemoteMemory`
calls them and rebuilds from their JSON what `Memory` returns, so every answer carries all of
the record it stands for (a turn's whole context, a search hit's whole message).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from memchat.errors import InvalidInput, Unanswered
from memchat.interface import ConversationMemory
from memchat.items import from_responses_input
from memchat.records import MessageCreate
from memchat.results import Reply
from memchat.schemas import Budget, ModelName, Policy, Recall, ReplyTokens, ThreadSettings, TurnOptions
from memchat.server.access import memory_of
from memchat.server.errors import body as error_body
from memchat.server.errors import message_of, status_of
from memchat.server.requests import bad, storable_text
from memchat.server.turns import StreamedTurn, TurnRequest, answer, busy_wait
from memchat.views import context_json, search_json, thread_json

router = APIRouter(prefix="/memchat/v1", tags=["memchat"])
Scoped = Annotated[ConversationMemory, Depends(memory_of)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


MAX_FILENAME = 255
"""The longest file name an image's part keeps (as most file systems allow)."""

SERVER_OWN = "is the server's own setting (`memchat serve` and the thread's settings choose it), not a request's"


class ThreadBody(ThreadSettings):
    """A thread's settings, as `memchat new` / `memchat set` take them; the provider endpoint a
    thread's turns go to is the server's to choose."""

    @field_validator("api_base")
    @classmethod
    def _servers_own(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(SERVER_OWN)
        return value


class TurnBody(TurnOptions):
    """A turn's options, as `memchat say` takes them, with its message; `stream`: memchat's own
    events (below). The provider endpoint, the time-out of the model calls and the wait for a
    busy thread are the server's own (`memchat serve --timeout/--busy-wait`)."""

    message: str | None = None
    items: list[Any] | None = None
    """The turn's items before `message` (tool outputs, a user message with images or files), as
    Responses input items: `memchat.items.from_responses_input` checks them as it checks any
    client's, the bytes of an image or a file coming as base64 data URLs."""
    stream: StrictBool = False

    @field_validator("api_base", "timeout", "wait")
    @classmethod
    def _servers_own(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(SERVER_OWN)
        return value

    def turn(self, thread_id: str, text: str | None, edit_at: int | None = None) -> TurnRequest:
        options = TurnOptions.model_validate(self.model_dump(include=set(TurnOptions.model_fields), exclude_unset=True))
        said: tuple[MessageCreate, ...] = ()
        if self.items:
            try:
                said = tuple(from_responses_input(self.items, field="items"))
            except InvalidInput as refused:
                raise bad(str(refused), str(refused).partition(": ")[0]) from None
            for index, (record, given) in enumerate(zip(said, self.items)):
                _image_names(record, given, f"items[{index}].content")
        return TurnRequest(thread_id, text, options, items=said, edit_at=edit_at)


def _image_names(record: MessageCreate, given: Any, param: str) -> None:
    """The file name an image came from (`input_image.filename`, memchat's own field: the CLI
    sends it), kept on the image's part so `show` can name it."""
    content = given.get("content") if isinstance(given, dict) else None
    if record.parts is None or not isinstance(content, list):
        return
    for index, (part, sent) in enumerate(zip(record.parts, content)):
        name = sent.get("filename") if part["type"] == "image" and isinstance(sent, dict) else None
        if name is None:
            continue
        where = f"{param}[{index}].filename"
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_FILENAME:
            raise bad(f"{where}: must be a string of 1 to {MAX_FILENAME} characters", where)
        part["filename"] = storable_text(name, where)


class EditBody(TurnBody):
    position: int = Field(ge=0)
    message: str


class ForkBody(Strict):
    at: int | None = Field(default=None, ge=-1)


class ContextBody(Strict):
    message: str | None = None
    model: ModelName | None = None
    budget: Budget | None = None
    max_tokens: ReplyTokens | None = None
    policy: Policy | None = None
    recall: Recall | None = None
    with_dropped: StrictBool = True


def _thread(memory: ConversationMemory, thread_id: str) -> dict[str, Any]:
    thread = memory.thread(thread_id)
    return thread_json(thread, memory.usage_totals(thread.id).get(thread.id))


@router.get("/threads")
def list_threads(memory: Scoped, last: Annotated[int | None, Query(ge=1)] = None):
    """`memchat list --json` (`last`: only the most recent that many)."""
    totals = memory.usage_totals()
    return [thread_json(thread, totals.get(thread.id)) for thread in memory.threads(last=last)]


@router.post("/threads")
def new_thread(body: ThreadBody, memory: Scoped):
    """`memchat new`."""
    return thread_json(memory.new_thread(body), None)


@router.get("/threads/{thread_id}")
def get_thread(thread_id: str, memory: Scoped):
    return _thread(memory, thread_id)


@router.patch("/threads/{thread_id}")
def set_thread(thread_id: str, body: ThreadBody, memory: Scoped):
    """`memchat set` / `memchat rename`: the settings given change; null returns one to its default."""
    changes = body.model_dump(exclude_unset=True)
    thread = memory.thread(thread_id)
    if "title" in changes and changes["title"]:
        memory.rename(thread.id, changes.pop("title"))
    if changes:
        memory.configure(thread.id, **changes)
    return _thread(memory, thread.id)


@router.delete("/threads/{thread_id}")
def delete_thread(thread_id: str, memory: Scoped):
    """`memchat rm`."""
    return {"id": memory.delete(memory.thread(thread_id).id), "deleted": True}


@router.get("/threads/{thread_id}/messages")
def messages(thread_id: str, memory: Scoped, last: Annotated[int | None, Query(ge=1)] = None):
    """`memchat show --json`'s messages (`last`: only the newest that many)."""
    return [message.model_dump(mode="json") for message in memory.messages(thread_id, last=last)]


def _reply_json(reply: Reply) -> dict[str, Any]:
    return {
        "thread": reply.thread_id,
        "text": reply.text,
        "message": reply.message.model_dump(mode="json"),
        "user_message": reply.user_message.model_dump(mode="json"),
        "context": context_json(reply.context),
        "summary": reply.summary.model_dump(mode="json") if reply.summary else None,
        "finish_reason": reply.finish_reason,
        "items": [item.model_dump(mode="json") for item in reply.items],
        "said": [item.model_dump(mode="json") for item in reply.said],
    }


async def _answered(request: Request, ask: Callable[[ConversationMemory], TurnRequest], stream: bool):
    if not stream:
        return _reply_json(await answer(request, ask))
    streamed = StreamedTurn(request, ask, notes=True)
    first = await streamed.next()
    if first[0] == "error":
        raise first[1]  # nothing stored yet: a plain HTTP error

    async def events() -> AsyncIterator[str]:
        event = first
        try:
            while True:
                kind, value = event
                if kind == "start":
                    yield _event("start", value.model_dump(mode="json"))
                elif kind == "note":
                    yield _event("note", {"text": value})
                elif kind == "text":
                    yield _event("text", {"delta": value})
                elif kind == "reply":
                    yield _event("reply", _reply_json(value))
                    return
                else:
                    yield _event("error", _failure_json(value))
                    return
                event = await streamed.next()
        except BaseException:
            streamed.abandon()
            raise

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _failure_json(failure: BaseException) -> dict[str, Any]:
    """A failure after the turn began: the error body with its status, and what a face needs to
    say how to go on (the thread whose message is kept unanswered, a partial reply's text)."""
    status, code, _ = status_of(failure)
    return {
        **error_body(status, message_of(failure), code=code),
        "status": status,
        "unanswered_in": failure.thread_id if isinstance(failure, Unanswered) else None,
        "partial": failure.partial if isinstance(failure, Unanswered) else None,
    }


@router.post("/threads/{thread_id}/say")
async def say(thread_id: str, body: TurnBody, request: Request):
    """`memchat say`: the reply as JSON, or with `stream` memchat's own server-sent events:
    `start` (the stored user message), `note` ({"text"}: what memchat did on the user's behalf),
    `text` ({"delta"}), then `reply` (this endpoint's JSON) or `error` (an OpenAI error body with
    `status`, `unanswered_in` and a cut-off reply's `partial` text). The Responses API streams too."""

    def ask(memory: ConversationMemory) -> TurnRequest:
        if body.message is None and not body.items:
            raise bad("`message` or `items` is required (POST .../retry resends the last unanswered one)", "message")
        return body.turn(memory.thread(thread_id).id, body.message)

    return await _answered(request, ask, body.stream)


@router.post("/threads/{thread_id}/retry")
async def retry(thread_id: str, body: TurnBody, request: Request):
    """`memchat retry`: the last unanswered message, sent again (`stream` as for say)."""

    def ask(memory: ConversationMemory) -> TurnRequest:
        if body.message is not None or body.items:
            raise bad("retry resends the stored message: give no `message` or `items`", "message")
        return body.turn(memory.thread(thread_id).id, None)

    return await _answered(request, ask, body.stream)


@router.post("/threads/{thread_id}/edit")
async def edit(thread_id: str, body: EditBody, request: Request):
    """`memchat edit`: user message `position` asked again with `message`, in a fork (the reply's `thread`)."""

    def ask(memory: ConversationMemory) -> TurnRequest:
        if body.items:
            raise bad("an edit asks a user message again as text: give no `items`", "items")
        return body.turn(memory.thread(thread_id).id, body.message, edit_at=body.position)

    return await _answered(request, ask, body.stream)


@router.get("/threads/{thread_id}/turn")
def turn_in_progress(thread_id: str, memory: Scoped):
    """Whether a turn holds the thread now (`memchat show` marks a pending message interrupted when not)."""
    return {"in_progress": memory.turn_in_progress(memory.thread(thread_id).id)}


@router.post("/threads/{thread_id}/fork")
def fork(thread_id: str, body: ForkBody, memory: Scoped):
    """`memchat fork --json`: a new thread with the history up to message `at` (default: all)."""
    made = memory.fork(thread_id, at=body.at, wait=busy_wait())
    return thread_json(made, None)


@router.post("/threads/{thread_id}/accept")
def accept(thread_id: str, memory: Scoped):
    """`memchat accept`: keep a cut-off reply as if complete."""
    return memory.accept(thread_id).model_dump(mode="json")


@router.post("/threads/{thread_id}/undo")
def undo(thread_id: str, memory: Scoped):
    """`memchat undo`: the last turn taken out of the thread's memory, kept and marked undone
    (409 while a turn is in progress on the thread)."""
    return [message.model_dump(mode="json") for message in memory.undo(thread_id)]


@router.post("/threads/{thread_id}/context")
def context(thread_id: str, body: ContextBody, memory: Scoped):
    """`memchat context --json`: what the next turn would send, without calling the model."""
    result = memory.context(thread_id, body.message, **body.model_dump(exclude={"message"}))
    return context_json(result)


@router.get("/threads/{thread_id}/summaries")
def summaries(thread_id: str, memory: Scoped):
    """`memchat summary --all --json`: every summary, oldest first (the last is current)."""
    return [summary.model_dump(mode="json") for summary in memory.summaries(thread_id)]


@router.post("/threads/{thread_id}/embed")
def embed(thread_id: str, memory: Scoped):
    """`memchat embed`: the vectors the thread's recall by meaning needs, made now (model calls)."""
    return {"thread": memory.thread(thread_id).id, "embedded": memory.embed(thread_id)}


@router.post("/threads/{thread_id}/summaries/rebuild")
def rebuild(thread_id: str, memory: Scoped):
    """`memchat summary --rebuild`: summarize again from the first message (model calls)."""
    return memory.rebuild_summary(thread_id).model_dump(mode="json")


@router.get("/search")
def search(
    memory: Scoped,
    q: Annotated[str, Query(min_length=1)],
    thread: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
):
    """`memchat search --json`, each hit with its whole `message`: the caller's messages only."""
    return [
        {**search_json(hit), "message": hit.message.model_dump(mode="json")}
        for hit in memory.search(q, thread_id=thread, limit=limit)
    ]


@router.get("/stats")
def stats(
    memory: Scoped,
    thread: str | None = None,
    by: Literal["model", "day", "thread"] | None = None,
    since: datetime | None = None,
):
    """`memchat stats --json`: the caller's own usage (`since`: ISO 8601, UTC unless given)."""
    return memory.stats(thread, by=by, since=since)


def _streamed_export(memory: ConversationMemory, thread_id: str | None) -> StreamingResponse:
    """The export written page by page as the client reads it: flat memory for any size."""
    pieces: queue.Queue = queue.Queue(maxsize=64)
    stop = threading.Event()

    class Pipe:
        def write(self, text: str) -> int:
            while not stop.is_set():
                try:
                    pieces.put(text, timeout=0.5)
                    return len(text)
                except queue.Full:
                    continue
            raise ConnectionAbortedError("the client stopped reading the export")

        def flush(self) -> None:
            pass

    def work() -> None:
        try:
            memory.write_export(Pipe(), thread_id)
        except BaseException as failure:  # the stream ends early; the client sees truncated JSON
            pieces.put(failure)
        else:
            pieces.put(None)

    def chunks() -> Iterator[str]:
        writer = threading.Thread(target=work, name="memchat-export", daemon=True)
        writer.start()
        try:
            while (piece := pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            stop.set()

    return StreamingResponse(chunks(), media_type="application/json")


@router.get("/threads/{thread_id}/export")
def export_thread(thread_id: str, memory: Scoped):
    """`memchat export THREAD`."""
    return _streamed_export(memory, memory.thread(thread_id).id)


@router.get("/export")
def export_all(memory: Scoped):
    """`memchat export --all`: every thread the caller may see, as a JSON array, streamed."""
    return _streamed_export(memory, None)


@router.post("/import")
async def import_threads(request: Request, memory: Scoped):
    """`memchat import`: an export (one thread or an array); all of it or nothing. The threads
    made belong to the caller; `existing` names the caller's threads that earlier imports
    brought from the same sources (not made again); `unlinked` the forks made without their
    link, their origin being no thread of the caller's."""
    data = await request.body()
    result = await to_thread.run_sync(memory.import_, data)
    return {
        "threads": result.threads,
        "existing": [{"source": source, "thread": thread} for source, thread in result.existing],
        "unlinked": [{"thread": thread, "forked_from": origin} for thread, origin in result.unlinked],
    }
