"""OpenAI's Responses API as memchat turns: `POST /v1/responses` takes one turn on the
conversation (history from the store, fitted to its budget with its policy, the reply stored),
streamed as OpenAI's events when asked; `GET /v1/responses/{id}` reads a stored reply back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from memchat.errors import NotFound, ReplyCutOff, cause_of
from memchat.interface import ItemMemory
from memchat.schemas import TurnOptions
from memchat.server import shapes
from memchat.server.access import memory_of
from memchat.server.errors import body as error_body
from memchat.server.errors import message_of, status_of
from memchat.server.requests import (
    ResponseCreate,
    bad,
    leading_system,
    message_items,
)
from memchat.server.turns import StreamedTurn, TurnRequest, answer, busy_wait

router = APIRouter(prefix="/v1/responses", tags=["Responses"])
Scoped = Annotated[ItemMemory, Depends(memory_of)]


def _conversation_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    raise bad('must be a conversation id or {"id": ...}', "conversation")


def _turn_of(body: ResponseCreate, memory: ItemMemory) -> TurnRequest:
    """The turn a request asks for; earlier input messages are stored within it, before the last."""
    body.refuse_unsupported()
    if body.input is None:
        raise bad("`input` is required", "input")
    system, items = leading_system(message_items(body.input, "input"), "input")
    if system is not None and body.instructions is not None:
        raise bad("give this turn's system prompt once: as `instructions` or as a leading system item", "input[0]")
    if not items or items[-1][0] != "user":
        raise bad("the input must end with a user message: it is what the model answers", "input")
    thread_id = _conversation_id(body.conversation)
    if thread_id is not None and body.previous_response_id is not None:
        raise bad("give `conversation` or `previous_response_id`, not both", "previous_response_id")
    forked = False
    if body.previous_response_id is not None:
        thread_id, forked = _continued_from(body.previous_response_id, memory)
    made = thread_id is None or forked
    thread_id = memory.new_thread(model=body.model).id if thread_id is None else memory.thread(thread_id).id
    try:
        if len(items) > 1:
            # The turn's own checks first (text, budget), so a request refused stores nothing.
            memory.context(
                thread_id, items[-1][1], model=body.model, max_tokens=body.max_output_tokens, with_dropped=False
            )
        return TurnRequest(
            thread_id=thread_id,
            text=items[-1][1],
            options=TurnOptions(
                model=body.model,
                system=body.instructions if body.instructions is not None else system,
                max_tokens=body.max_output_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                reasoning_effort=body.reasoning_effort,
            ),
            earlier=tuple(items[:-1]),
            made_for_turn=made,
        )
    except BaseException:
        if made:
            memory.delete(thread_id)
        raise


def _stored_reply(response_id: str, memory: ItemMemory):
    """The reply a response id names, in a conversation this caller may see (else 404)."""
    thread_id, position = shapes.message_named(response_id, shapes.RESPONSE_PREFIX, "response")
    try:
        thread = memory.thread(thread_id)
        if thread.id != thread_id:
            raise NotFound(response_id)
        reply = memory.message(thread.id, position)
    except NotFound:
        raise NotFound(f"no response {response_id!r}") from None
    if reply.role != "assistant":
        raise NotFound(f"no response {response_id!r}")
    return reply


def _continued_from(response_id: str, memory: ItemMemory) -> tuple[str, bool]:
    """The conversation a response belongs to when it is that conversation's newest reply;
    for an older reply, a fork of the conversation through it (as OpenAI branches there), whose
    id the response carries. With it, whether that fork was made for this request."""
    reply = _stored_reply(response_id, memory)
    newest = memory.messages(reply.thread_id, last=1)
    if newest and newest[0].id == reply.id:
        return reply.thread_id, False
    return memory.fork(reply.thread_id, at=reply.position, wait=busy_wait()).id, True


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
    return body.model_dump(include=ECHOED)


@router.post("")
async def create_response(body: ResponseCreate, request: Request):
    if body.stream:
        return await _streamed(request, body)
    reply = await answer(request, partial(_turn_of, body))
    status, reason = shapes.outcome(reply)
    made = shapes.response(
        id=shapes.response_id(reply.thread_id, reply.message.position),
        thread_id=reply.thread_id,
        created_at=shapes.seconds(reply.user_message.created_at),
        model=reply.message.model or body.model or "",
        status=status,
        output=[shapes.output_message(shapes.item_id(reply.thread_id, reply.message.position), reply.text, status)],
        usage_=shapes.usage(reply.message),
        request=_request_echo(body),
        incomplete_reason=reason,
    )
    return JSONResponse(made)  # plain JSON already: FastAPI's encoder would walk it again (~0.5 ms)


@router.get("/{response_id}")
def get_response(response_id: str, memory: Scoped):
    return shapes.stored_response(_stored_reply(response_id, memory))


def _event(kind: str, sequence: int, **fields: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': sequence, **fields}, ensure_ascii=False)}\n\n"


async def _streamed(http: Request, body: ResponseCreate):
    """OpenAI's event order: created, in_progress, output_item.added, content_part.added,
    output_text.delta..., output_text.done, content_part.done, output_item.done, completed.
    Failures before the first piece are plain HTTP errors; after it, a `response.failed` (or
    `response.incomplete` for a cut-off reply) event ends the stream."""
    streamed = StreamedTurn(http, partial(_turn_of, body))
    started, first = await streamed.begun()
    if first[0] == "error":
        raise first[1]
    turn, memory = streamed.turn, streamed.memory
    created = int(time.time())
    reply_position = started.position + 1  # the turn holds the thread: its reply comes next
    response_id = shapes.response_id(turn.thread_id, reply_position)
    item_id = shapes.item_id(turn.thread_id, reply_position)
    request = _request_echo(body)
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
        try:
            yield _event("response.created", next(sequence), response=snapshot("in_progress", []))
            yield _event("response.in_progress", next(sequence), response=snapshot("in_progress", []))
            item = shapes.output_message(item_id, "", "in_progress")
            yield _event("response.output_item.added", next(sequence), output_index=0, item={**item, "content": []})
            part = {"type": "output_text", "text": "", "annotations": []}
            yield _event(
                "response.content_part.added",
                next(sequence),
                item_id=item_id,
                output_index=0,
                content_index=0,
                part=part,
            )
            while event[0] == "text":
                text.append(event[1])
                yield _event(
                    "response.output_text.delta",
                    next(sequence),
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=event[1],
                    logprobs=[],
                )
                event = await streamed.next()
        except BaseException:
            streamed.abandon()
            raise
        whole = "".join(text)
        if event[0] == "error":
            failure = event[1]
            status, code, _ = status_of(failure)
            if isinstance(cause_of(failure), ReplyCutOff):
                output = [shapes.output_message(item_id, whole, "incomplete")]
                yield _event(
                    "response.incomplete", next(sequence), response=snapshot("incomplete", output, reason="interrupted")
                )
                return
            error = error_body(status, message_of(failure), code=code)["error"]
            yield _event(
                "response.failed",
                next(sequence),
                response=snapshot("failed", [], error={"code": code, "message": error["message"]}),
            )
            return
        reply = event[1]
        status, reason = shapes.outcome(reply)
        final_item = shapes.output_message(item_id, reply.text, status)
        yield _event(
            "response.output_text.done",
            next(sequence),
            item_id=item_id,
            output_index=0,
            content_index=0,
            text=reply.text,
            logprobs=[],
        )
        yield _event(
            "response.content_part.done",
            next(sequence),
            item_id=item_id,
            output_index=0,
            content_index=0,
            part=final_item["content"][0],
        )
        yield _event("response.output_item.done", next(sequence), output_index=0, item=final_item)
        done = snapshot(status, [final_item], usage=shapes.usage(reply.message), reason=reason)
        yield _event(f"response.{status}", next(sequence), response=done)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
