"""OpenAI's Responses API as memchat turns: `POST /v1/responses` takes one turn on the
conversation (history from the store, fitted to its budget with its policy, the reply stored),
streamed as OpenAI's events when asked; `GET /v1/responses/{id}` reads a stored reply back.

A turn carries every item kind (`memchat.items`): function tools go to the model, the reply's
reasoning, text and function calls are its output, and the outputs of those calls are the next
request's input (with `conversation`, or `previous_response_id` naming the response that made
the calls, as the OpenAI Agents SDK chains its requests)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from memchat import items
from memchat.errors import InvalidInput, NotFound, ReplyCutOff, cause_of
from memchat.interface import ItemMemory
from memchat.records import MessageCreate, MessagePublic
from memchat.schemas import TurnOptions
from memchat.server import shapes
from memchat.server.access import memory_of
from memchat.server.errors import body as error_body
from memchat.server.errors import message_of, status_of
from memchat.server.requests import (
    ResponseCreate,
    bad,
    check_pairing,
    problem_of,
    read_items,
    system_first,
)
from memchat.server.turns import StreamedTurn, TurnRequest, answer, busy_wait
from memchat.turn import Reply

router = APIRouter(prefix="/v1/responses", tags=["Responses"])
Scoped = Annotated[ItemMemory, Depends(memory_of)]

REPLY_KINDS = ("message", "function_call", "reasoning")
"""What a model's reply stores (role assistant): a response is a run of these."""


def _conversation_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    raise bad('must be a conversation id or {"id": ...}', "conversation")


def _tools_of(body: ResponseCreate) -> tuple[list[dict] | None, str | dict | None]:
    """The request's function tools (Chat Completions' shape, which the model is sent) and its
    tool choice, or a 400 naming the field."""
    try:
        tools = items.check_tools(body.tools, shape="responses") if body.tools is not None else []
        choice = items.check_tool_choice(body.tool_choice, tools, shape="responses")
    except InvalidInput as refused:
        raise problem_of(refused, "tools") from None
    return tools or None, choice


def _split(records: list[MessageCreate]) -> tuple[list[MessageCreate], list[MessageCreate], str | None]:
    """The input as a turn stores it: what comes up to the model's last item in it (a history
    replayed, stored before the turn), then the turn's own items (the outputs of the calls, the
    user's messages), the last user message of text apart as the turn's text."""
    last_reply = max((index for index, record in enumerate(records) if record.role == "assistant"), default=-1)
    earlier, own = records[: last_reply + 1], records[last_reply + 1 :]
    if not own:
        raise bad(
            "the input must end with what the model answers: a user message, or the outputs of its function calls",
            "input",
        )
    last = own[-1]
    if last.kind == "message" and last.role == "user" and last.parts is None:
        return earlier, own[:-1], last.content
    return earlier, own, None


def _turn_of(body: ResponseCreate, memory: ItemMemory) -> TurnRequest:
    """The turn a request asks for; earlier input items are stored within it, before its own."""
    body.refuse_unsupported()
    if body.input is None:
        raise bad("`input` is required", "input")
    tools, tool_choice = _tools_of(body)
    system, records = system_first(read_items(body.input, "input"), "input")
    if system is not None and body.instructions is not None:
        raise bad("give this turn's system prompt once: as `instructions` or as a leading system item", "input[0]")
    earlier, own, text = _split(records)
    thread_id = _conversation_id(body.conversation)
    if thread_id is not None and body.previous_response_id is not None:
        raise bad("give `conversation` or `previous_response_id`, not both", "previous_response_id")
    forked = False
    if body.previous_response_id is not None:
        thread_id, forked = _continued_from(body.previous_response_id, memory)
    made = thread_id is None or forked
    thread_id = memory.new_thread(model=body.model).id if thread_id is None else memory.thread(thread_id).id
    try:
        said = [*earlier, *own, *([MessageCreate(role="user", content=text)] if text is not None else [])]
        check_pairing(memory.waiting_calls(thread_id), said, "input", closed=True)
        options = TurnOptions(
            model=body.model,
            system=body.instructions if body.instructions is not None else system,
            max_tokens=body.max_output_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            reasoning_effort=body.reasoning_effort,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=body.parallel_tool_calls,
        )
        if earlier and text is not None:
            # The turn's own checks first (text, budget), so a request refused stores nothing.
            memory.context(thread_id, text, options, with_dropped=False)
        return TurnRequest(
            thread_id=thread_id,
            text=text,
            options=options,
            earlier=tuple(earlier),
            items=tuple(own),
            made_for_turn=made,
        )
    except BaseException:
        if made:
            memory.delete(thread_id)
        raise


def _stored_reply(response_id: str, memory: ItemMemory) -> list[MessagePublic]:
    """The items of the reply a response id names (its reasoning, text and calls, in order), in
    a conversation this caller may see (else 404)."""
    thread_id, position = shapes.message_named(response_id, shapes.RESPONSE_PREFIX, "response")
    try:
        thread = memory.thread(thread_id)
        if thread.id != thread_id:
            raise NotFound(response_id)
        first = memory.message(thread.id, position)
    except NotFound:
        raise NotFound(f"no response {response_id!r}") from None
    if first.role != "assistant" or first.kind not in REPLY_KINDS:
        raise NotFound(f"no response {response_id!r}")
    run = [first]
    after = position
    while True:
        page, more = memory.message_page(thread.id, after=after, limit=16)
        for message in page:
            if message.role != "assistant" or message.kind not in REPLY_KINDS or message.position != after + 1:
                return run
            run.append(message)
            after = message.position
        if not more:
            return run


def _continued_from(response_id: str, memory: ItemMemory) -> tuple[str, bool]:
    """The conversation a response belongs to when it is that conversation's newest reply
    (function calls waiting for their outputs included); for an older reply, a fork of the
    conversation through it (as OpenAI branches there), whose id the response carries. With it,
    whether that fork was made for this request."""
    reply = _stored_reply(response_id, memory)
    last = reply[-1]
    newest = memory.messages(last.thread_id, last=1)
    if newest and newest[0].id == last.id:
        return last.thread_id, False
    return memory.fork(last.thread_id, at=last.position, wait=busy_wait()).id, True


ECHOED = {
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "previous_response_id",
    "tool_choice",
    "parallel_tool_calls",
    "prompt_cache_key",
}
"""The request's fields a response repeats, as OpenAI's does."""


def _request_echo(body: ResponseCreate) -> dict[str, Any]:
    echoed = body.model_dump(include=ECHOED)
    tools, _ = _tools_of(body)
    echoed["tools"] = shapes.responses_tools(tools)
    return echoed


def _no_blobs(sha256: str) -> bytes:
    raise NotFound(f"a reply holds no image or file ({sha256[:12]})")


@router.post("")
async def create_response(body: ResponseCreate, request: Request):
    if body.stream:
        return await _streamed(request, body)
    reply = await answer(request, partial(_turn_of, body))
    status, reason = shapes.outcome(reply)
    first = reply.items[0] if reply.items else reply.message
    made = shapes.response(
        id=shapes.response_id(reply.thread_id, first.position),
        thread_id=reply.thread_id,
        created_at=shapes.seconds(reply.user_message.created_at),
        model=reply.message.model or body.model or "",
        status=status,
        output=shapes.output_items(reply.items or (reply.message,), _no_blobs, _included(body)),
        usage_=shapes.reply_usage(reply.items or (reply.message,)),
        request=_request_echo(body),
        incomplete_reason=reason,
    )
    return JSONResponse(made)  # plain JSON already: FastAPI's encoder would walk it again (~0.5 ms)


def _included(body: ResponseCreate) -> frozenset[str]:
    """What a response's own output holds: as OpenAI's `POST /v1/responses` does, a reasoning
    item's `encrypted_content` comes by default."""
    return frozenset({items.ENCRYPTED_CONTENT, *(body.include or ())})


@router.get("/{response_id}")
def get_response(response_id: str, memory: Scoped):
    return shapes.stored_response(_stored_reply(response_id, memory), shapes.blob_reader(memory.blobs))


def _event(kind: str, sequence: int, **fields: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': sequence, **fields}, ensure_ascii=False)}\n\n"


def _reply_position(started: MessagePublic, turn: TurnRequest) -> int:
    """Where the reply's first item will be stored: after the turn's own items, which the turn
    stored from `started` on (its user message, or its first output when it has none)."""
    said = [*turn.items, *([MessageCreate(role="user", content=turn.text)] if turn.text is not None else [])]
    index = next((index for index, record in enumerate(said) if record.role == "user"), 0)
    return started.position + len(said) - index


def _item_events(item: dict[str, Any], index: int, sequence: Iterator[int]) -> Iterator[str]:
    """A whole output item's events, in OpenAI's order (docs/agent-items.md §2): added, its
    content (a function call's arguments, a reasoning item's text, a message's text), done."""
    kind = item["type"]
    if kind == "function_call":
        yield _event(
            "response.output_item.added",
            next(sequence),
            output_index=index,
            item={**item, "arguments": "", "status": "in_progress"},
        )
        yield _event(
            "response.function_call_arguments.delta",
            next(sequence),
            item_id=item["id"],
            output_index=index,
            delta=item["arguments"],
        )
        yield _event(
            "response.function_call_arguments.done",
            next(sequence),
            item_id=item["id"],
            name=item["name"],
            output_index=index,
            arguments=item["arguments"],
        )
    elif kind == "reasoning":
        opened = {key: value for key, value in item.items() if key not in ("content", "encrypted_content")}
        yield _event(
            "response.output_item.added",
            next(sequence),
            output_index=index,
            item={**opened, "summary": [], "status": "in_progress"},
        )
        for summary_index, part in enumerate(item["summary"]):
            yield from _summary_events(item["id"], index, summary_index, part["text"], sequence)
        for content_index, part in enumerate(item.get("content") or ()):
            fields = {"item_id": item["id"], "output_index": index, "content_index": content_index}
            yield _event("response.reasoning_text.delta", next(sequence), **fields, delta=part["text"])
            yield _event("response.reasoning_text.done", next(sequence), **fields, text=part["text"])
    else:
        yield _event(
            "response.output_item.added",
            next(sequence),
            output_index=index,
            item={**item, "content": [], "status": "in_progress"},
        )
        for content_index, part in enumerate(item["content"]):
            yield from _part_events(item["id"], index, content_index, part, sequence)
    yield _event("response.output_item.done", next(sequence), output_index=index, item=item)


def _summary_events(item_id: str, index: int, summary_index: int, text: str, sequence: Iterator[int]) -> Iterator[str]:
    fields = {"item_id": item_id, "output_index": index, "summary_index": summary_index}
    yield _event(
        "response.reasoning_summary_part.added", next(sequence), **fields, part={"type": "summary_text", "text": ""}
    )
    yield _event("response.reasoning_summary_text.delta", next(sequence), **fields, delta=text)
    yield _event("response.reasoning_summary_text.done", next(sequence), **fields, text=text)
    yield _event(
        "response.reasoning_summary_part.done", next(sequence), **fields, part={"type": "summary_text", "text": text}
    )


def _part_events(item_id: str, index: int, content_index: int, part: dict, sequence: Iterator[int]) -> Iterator[str]:
    """A message's content part whole: added (empty), its text as one delta, done."""
    fields = {"item_id": item_id, "output_index": index, "content_index": content_index}
    if part["type"] == "refusal":
        yield _event("response.content_part.added", next(sequence), **fields, part={"type": "refusal", "refusal": ""})
        yield _event("response.refusal.delta", next(sequence), **fields, delta=part["refusal"])
        yield _event("response.refusal.done", next(sequence), **fields, refusal=part["refusal"])
    else:
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield _event("response.content_part.added", next(sequence), **fields, part=empty)
        if part["text"]:
            yield _event("response.output_text.delta", next(sequence), **fields, delta=part["text"], logprobs=[])
        yield _event("response.output_text.done", next(sequence), **fields, text=part["text"], logprobs=[])
    yield _event("response.content_part.done", next(sequence), **fields, part=part)


async def _streamed(http: Request, body: ResponseCreate):
    """OpenAI's event order: created, in_progress, then each output item (added, its content,
    done), then completed. The reply's text streams as it arrives, in a message item opened at
    its first piece; the reply's other items (reasoning, function calls) come whole once the
    model has finished, each item closed before the next is added. Failures before the first
    piece are plain HTTP errors; after it, a `response.failed` (or `response.incomplete` for a
    cut-off reply) event ends the stream."""
    streamed = StreamedTurn(http, partial(_turn_of, body))
    started, first = await streamed.begun()
    if first[0] == "error":
        raise first[1]
    turn, memory = streamed.turn, streamed.memory
    created = int(time.time())
    reply_position = _reply_position(started, turn)
    response_id = shapes.response_id(turn.thread_id, reply_position)
    text_id = shapes.item_id(turn.thread_id, reply_position)
    request = _request_echo(body)
    included = _included(body)
    model = body.model or memory.thread(turn.thread_id).model or ""

    def snapshot(status: str, output: list, usage=None, error=None, reason=None) -> dict[str, Any]:
        return shapes.response(
            id=response_id,
            thread_id=turn.thread_id,
            created_at=created,
            model=model,
            status=status,
            output=output,
            usage_=usage,
            request=request,
            error=error,
            incomplete_reason=reason,
        )

    async def events() -> AsyncIterator[str]:
        sequence = iter(range(1_000_000))
        text: list[str] = []
        event = first
        fields = {"item_id": text_id, "output_index": 0, "content_index": 0}
        try:
            yield _event("response.created", next(sequence), response=snapshot("in_progress", []))
            yield _event("response.in_progress", next(sequence), response=snapshot("in_progress", []))
            while event[0] == "text":
                if not text:
                    opened = {**shapes.output_message(text_id, "", "in_progress"), "content": []}
                    yield _event("response.output_item.added", next(sequence), output_index=0, item=opened)
                    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    yield _event("response.content_part.added", next(sequence), **fields, part=part)
                text.append(event[1])
                yield _event("response.output_text.delta", next(sequence), **fields, delta=event[1], logprobs=[])
                event = await streamed.next()
        except BaseException:
            streamed.abandon()
            raise
        if event[0] == "error":
            yield _failed(event[1], "".join(text), text_id, snapshot, sequence)
            return
        reply: Reply = event[1]
        status, reason = shapes.outcome(reply)
        stored = list(reply.items or (reply.message,))
        output = shapes.output_items(stored, _no_blobs, included)
        order = list(range(len(stored)))
        if text:
            # The message streamed first; the reply's other items follow it, in their order.
            message = next(index for index, item in enumerate(stored) if item.kind == "message")
            order.remove(message)
            order.insert(0, message)
            final = output[message]
            yield _event("response.output_text.done", next(sequence), **fields, text=reply.text, logprobs=[])
            yield _event("response.content_part.done", next(sequence), **fields, part=final["content"][0])
            yield _event("response.output_item.done", next(sequence), output_index=0, item=final)
        for index, stored_index in enumerate(order):
            if text and index == 0:
                continue
            for line in _item_events(output[stored_index], index, sequence):
                yield line
        done = snapshot(status, [output[index] for index in order], usage=shapes.reply_usage(stored), reason=reason)
        yield _event(f"response.{status}", next(sequence), response=done)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _failed(failure: BaseException, whole: str, text_id: str, snapshot, sequence: Iterator[int]) -> str:
    """The event that ends a stream whose turn failed: `response.incomplete` holding what
    arrived of a reply cut off, else `response.failed`."""
    status, code, _ = status_of(failure)
    if isinstance(cause_of(failure), ReplyCutOff):
        output = [shapes.output_message(text_id, whole, "incomplete")]
        return _event(
            "response.incomplete", next(sequence), response=snapshot("incomplete", output, reason="interrupted")
        )
    error = error_body(status, message_of(failure), code=code)["error"]
    return _event(
        "response.failed",
        next(sequence),
        response=snapshot("failed", [], error={"code": code, "message": error["message"]}),
    )
