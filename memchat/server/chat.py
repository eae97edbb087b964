"""Chat Completions for clients that speak only that protocol: the `X-Memchat-Thread` header
names the conversation, the request's final user message is the new turn, a leading system
message is this turn's system prompt, and the history comes from the store (the other messages
of the request are not sent: the memory is memchat's, fitted to the thread's budget)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from memchat.interface import ConversationMemory
from memchat.schemas import TurnOptions
from memchat.server import shapes
from memchat.server.errors import HTTPProblem, message_of, status_of
from memchat.server.errors import body as error_body
from memchat.server.requests import (
    CHAT_DEFAULTS,
    ChatCompletionCreate,
    bad,
    leading_system,
    message_items,
)
from memchat.server.turns import StreamedTurn, TurnRequest, answer

router = APIRouter(prefix="/v1/chat", tags=["Chat Completions"])
THREAD_HEADER = "X-Memchat-Thread"


def _turn_of(body: ChatCompletionCreate, thread: str | None, memory: ConversationMemory) -> TurnRequest:
    if not thread:
        raise HTTPProblem(
            400,
            f"name the conversation in the {THREAD_HEADER} header (a thread or conversation id): memchat keeps "
            "the history, so only the new message is taken from `messages`",
            param=THREAD_HEADER,
            code="missing_thread",
        )
    body.refuse_unknown(CHAT_DEFAULTS)
    system, items = leading_system(message_items(body.messages, "messages"), "messages")
    if not items or items[-1][0] != "user":
        raise bad("the last message must be the user's: it is the new turn", "messages")
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise bad("give max_tokens or max_completion_tokens, not both", "max_completion_tokens")
    reply_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    return TurnRequest(
        thread_id=memory.thread(thread).id,
        text=items[-1][1],
        options=TurnOptions(
            model=body.model,
            system=system,
            max_tokens=reply_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            reasoning_effort=body.reasoning_effort,
        ),
    )


@router.post("/completions")
async def create_chat_completion(
    body: ChatCompletionCreate,
    request: Request,
    thread: Annotated[str | None, Header(alias=THREAD_HEADER)] = None,
):
    ask = partial(_turn_of, body, thread)
    if body.stream:
        return await _streamed(request, ask, body)
    reply = await answer(request, ask)
    return JSONResponse(shapes.chat_completion(reply.message, body.model, shapes.finish_reason(reply)))


async def _streamed(request: Request, ask: Callable[[ConversationMemory], TurnRequest], body: ChatCompletionCreate):
    """Chunks as OpenAI sends them: the role, the text piece by piece, the finish reason, the
    usage when `stream_options.include_usage`, then `data: [DONE]`. A failure after the first
    piece is an `error` chunk (what arrived is kept as a partial reply)."""
    streamed = StreamedTurn(request, ask)
    started, first = await streamed.begun()
    if first[0] == "error":
        raise first[1]
    turn = streamed.turn
    chunk_id = shapes.chat_id(turn.thread_id, started.position + 1)
    created = int(time.time())
    with_usage = bool((body.stream_options or {}).get("include_usage"))

    def data(payload) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def chunks() -> AsyncIterator[str]:
        event = first
        try:
            yield data(shapes.chat_chunk(chunk_id, created, body.model, {"role": "assistant", "content": ""}, None))
            while event[0] == "text":
                yield data(shapes.chat_chunk(chunk_id, created, body.model, {"content": event[1]}, None))
                event = await streamed.next()
        except BaseException:
            streamed.abandon()
            raise
        if event[0] == "error":
            failure = event[1]
            status, code, _ = status_of(failure)
            yield data(error_body(status, message_of(failure), code=code))
            return
        reply = event[1].message
        yield data(shapes.chat_chunk(chunk_id, created, body.model, {}, shapes.finish_reason(event[1])))
        if with_usage:
            usage = shapes.chat_completion(reply, body.model)["usage"]
            yield data({**shapes.chat_chunk(chunk_id, created, body.model, {}, None), "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
