"""Chat Completions for clients that speak only that protocol: the `X-Memchat-Thread` header
names the conversation, the request's last messages are the new turn (the user's message, or the
`tool` messages answering the model's calls, or both), a leading system message is this turn's
system prompt, and the history comes from the store (the other messages of the request are
checked but not sent: the memory is memchat's, fitted to the thread's budget). A reply of tool
calls is `choices[0].message.tool_calls` with `finish_reason: "tool_calls"`, in JSON and in
streamed deltas as OpenAI sends them (docs/agent-items.md §5)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from memchat import items
from memchat.errors import InvalidInput
from memchat.interface import ConversationMemory
from memchat.records import MessageCreate
from memchat.results import Reply
from memchat.schemas import TurnOptions
from memchat.server import shapes
from memchat.server.errors import HTTPProblem, message_of, status_of
from memchat.server.errors import body as error_body
from memchat.server.requests import CHAT_DEFAULTS, ChatCompletionCreate, bad
from memchat.server.turns import StreamedTurn, TurnRequest, answer

router = APIRouter(prefix="/v1/chat", tags=["Chat Completions"])
THREAD_HEADER = "X-Memchat-Thread"
ARGUMENT_PIECE = 64
"""Characters of a call's arguments in one streamed delta (OpenAI sends them in pieces)."""


@contextmanager
def _named() -> Iterator[None]:
    """`memchat.items`' refusals (`messages[3].content[1].image_url.url: ...`) as a 400 whose
    `param` is the field it names."""
    try:
        yield
    except InvalidInput as refused:
        text = str(refused)
        where, colon, _ = text.partition(": ")
        raise bad(text, where if colon and " " not in where else "messages") from None


def _turn_of(body: ChatCompletionCreate, thread: str | None, memory: ConversationMemory) -> TurnRequest:
    if not thread:
        raise HTTPProblem(
            400,
            f"name the conversation in the {THREAD_HEADER} header (a thread or conversation id): memchat keeps "
            "the history, so only the new turn (the user's message, or the tool messages answering the model's "
            "calls) is taken from `messages`",
            param=THREAD_HEADER,
            code="missing_thread",
        )
    body.refuse_unknown(CHAT_DEFAULTS)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise bad("give max_tokens or max_completion_tokens, not both", "max_completion_tokens")
    reply_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    system, text, said = _turn_messages(body.messages)
    tools, tool_choice = _tools_of(body)
    return TurnRequest(
        thread_id=memory.thread(thread).id,
        text=text,
        items=tuple(said),
        options=TurnOptions(
            model=body.model,
            system=system,
            max_tokens=reply_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            reasoning_effort=body.reasoning_effort,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=body.parallel_tool_calls if tools else None,
        ),
    )


def _tools_of(body: ChatCompletionCreate) -> tuple[list[dict] | None, Any]:
    """The function tools and the choice among them, in the shape litellm takes; without tools,
    `auto` and `none` mean what memchat does anyway and are not sent."""
    with _named():
        tools = items.check_tools(body.tools, shape="chat") if body.tools is not None else []
        choice = items.check_tool_choice(body.tool_choice, tools, shape="chat")
    if not tools:
        return None, None
    return tools, choice


def _turn_messages(messages: list[Any]) -> tuple[str | None, str | None, list[MessageCreate]]:
    """(system prompt, the new user text, the turn's items before it) of a request's messages.
    Every message is checked, the history too (a malformed call or image anywhere is a 400 naming
    it), though only the turn is stored: the trailing `tool` messages and the user's message
    after them. A `tool` message must answer a call of the assistant message before it, as
    OpenAI requires, unless it opens the request (the call is then the one waiting in the thread)."""
    with _named():
        items.from_chat_messages(messages, field="messages")
    roles = [message["role"] for message in messages]
    system = None
    first = 0
    if roles and roles[0] in ("system", "developer"):
        system, first = _system_text(messages[0]), 1
    for index in range(first, len(roles)):
        if roles[index] in ("system", "developer"):
            raise bad(
                "a system message can only come first (memchat sends one system prompt, first)",
                f"messages[{index}].role",
            )
        if roles[index] == "tool":
            _check_answers_a_call(messages, index, first)
    end = len(roles)
    if end == first or roles[-1] not in ("user", "tool"):
        raise bad("the last message must be the user's or a tool's: it is the new turn", "messages")
    start = end - 1 if roles[-1] == "user" else end
    while start > first and roles[start - 1] == "tool":
        start -= 1
    with _named():
        said = items.from_chat_messages(messages[start:], field="messages")
    text = None
    if roles[-1] == "user" and said[-1].parts is None:
        text = said.pop().content
    return system, text, said


def _system_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content)


def _check_answers_a_call(messages: list[Any], index: int, first: int) -> None:
    """OpenAI's rule for a `tool` message: it follows the assistant message whose `tool_calls`
    holds its `tool_call_id` (other `tool` messages between them)."""
    before = index - 1
    while before >= first and messages[before]["role"] == "tool":
        before -= 1
    if before < first:
        return
    previous = messages[before]
    calls = previous.get("tool_calls") if previous["role"] == "assistant" else None
    if not calls:
        raise bad(
            "messages with role 'tool' must be a response to a preceding message with 'tool_calls'",
            f"messages[{index}].role",
        )
    call_id = messages[index]["tool_call_id"]
    if call_id not in {call["id"] for call in calls}:
        raise bad(
            f"'tool_call_id' of {call_id!r} not found in 'tool_calls' of previous message",
            f"messages[{index}].tool_call_id",
        )


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else shapes.finish_reason(reply)


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    """The whole answer: the reply's text and tool calls as one assistant message, with the usage
    of the call (kept on the reply's text, or on its first call when it has no text)."""
    counted = next((item for item in reply.items if item.prompt_tokens is not None), reply.message)
    completion = shapes.chat_completion(counted, model, _finish_reason(reply))
    if reply.items:
        completion["choices"][0]["message"] = items.to_chat_message(reply.items)
    return completion


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
    return JSONResponse(_completion(reply, body.model))


async def _streamed(request: Request, ask: Callable[[ConversationMemory], TurnRequest], body: ChatCompletionCreate):
    """Chunks as OpenAI sends them: the role, the text piece by piece, each tool call (its first
    delta with `index`, `id`, `type`, `function.name` and empty `arguments`, then the arguments
    in pieces), the finish reason, the usage when `stream_options.include_usage`, then
    `data: [DONE]`. A failure after the first piece is an `error` chunk (what arrived is kept as
    a partial reply)."""
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
        reply = event[1]
        for index, call in enumerate(reply.tool_calls):
            for delta in _call_deltas(index, call.call_id, call.name, call.arguments):
                yield data(shapes.chat_chunk(chunk_id, created, body.model, delta, None))
        yield data(shapes.chat_chunk(chunk_id, created, body.model, {}, _finish_reason(reply)))
        if with_usage:
            usage = _completion(reply, body.model)["usage"]
            yield data({**shapes.chat_chunk(chunk_id, created, body.model, {}, None), "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _call_deltas(index: int, call_id: str, name: str, arguments: str) -> Iterator[dict[str, Any]]:
    """One tool call as OpenAI streams it (docs/agent-items.md §5.2)."""
    yield {
        "tool_calls": [{"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]
    }
    for at in range(0, len(arguments), ARGUMENT_PIECE):
        yield {"tool_calls": [{"index": index, "function": {"arguments": arguments[at : at + ARGUMENT_PIECE]}}]}
