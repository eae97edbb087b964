"""memchat's records in OpenAI's shapes (conversations, items, responses, chat completions) and
the ids that name them. A conversation id is the thread's own id (so the CLI and the API name the
same thread); a message is named by its thread and position (#N in `memchat show`), which are
known before the reply is stored and never change: item `msg_<thread>_<N>`, response
`resp_<thread>_<N>` (N the reply's), chat completion `chatcmpl-<thread>-<N>`. Pure functions:
no database, no HTTP."""

from __future__ import annotations

from typing import Any

from memchat.errors import NotFound
from memchat.records import MessagePublic, ThreadPublic
from memchat.times import as_utc
from memchat.turn import Reply

ITEM_PREFIX = "msg_"
RESPONSE_PREFIX = "resp_"
CHAT_PREFIX = "chatcmpl-"


def item_id(thread_id: str, position: int) -> str:
    return f"{ITEM_PREFIX}{thread_id}_{position}"


def response_id(thread_id: str, position: int) -> str:
    return f"{RESPONSE_PREFIX}{thread_id}_{position}"


def chat_id(thread_id: str, position: int) -> str:
    return f"{CHAT_PREFIX}{thread_id}-{position}"


def message_named(identifier: str, prefix: str, what: str, separator: str = "_") -> tuple[str, int]:
    """(thread id, position) inside an item or response id; NotFound for anything else."""
    thread, _, position = identifier.removeprefix(prefix).rpartition(separator)
    if not identifier.startswith(prefix) or not thread or not position.isdigit() or len(position) > 18:
        raise NotFound(f"no {what} {identifier!r}")
    return thread, int(position)


SETTINGS = (
    "title",
    "system",
    "model",
    "budget",
    "policy",
    "recall",
    "recall_embeddings",
    "summary_model",
    "summary_share",
    "tool_outputs",
)
"""The thread settings a client may read and change over HTTP (the `memchat` field). `api_base`
is not among them: where the server's turns go is the operator's choice, not a client's."""


def seconds(moment) -> int:
    return int(as_utc(moment).timestamp())


def conversation(thread: ThreadPublic) -> dict[str, Any]:
    return {
        "id": thread.id,
        "object": "conversation",
        "created_at": seconds(thread.created_at),
        "metadata": thread.labels or {},
        "memchat": {
            **{name: getattr(thread, name) for name in SETTINGS},
            "message_count": thread.message_count,
            "forked_from": thread.forked_from,
            "forked_at": thread.forked_at,
            "updated_at": seconds(thread.updated_at),
        },
    }


ITEM_STATUS = {"complete": "completed", "pending": "in_progress"}


def item_status(message: MessagePublic) -> str:
    """OpenAI's status of a stored message: a reply that stopped at its max_tokens is
    `incomplete`, though memchat keeps it as complete."""
    if message.status == "complete" and message.finish_reason == "length":
        return "incomplete"
    return ITEM_STATUS.get(message.status, "incomplete")


def item(message: MessagePublic) -> dict[str, Any]:
    part = "output_text" if message.role == "assistant" else "input_text"
    content: dict[str, Any] = {"type": part, "text": message.content}
    if part == "output_text":
        content["annotations"] = []
    return {
        "type": "message",
        "id": item_id(message.thread_id, message.position),
        "status": item_status(message),
        "role": message.role,
        "content": [content],
        "created_at": seconds(message.created_at),
        "memchat": {"position": message.position, "status": message.status},
    }


def item_list(messages: list[MessagePublic], has_more: bool) -> dict[str, Any]:
    data = [item(message) for message in messages]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def usage(reply: MessagePublic) -> dict[str, Any]:
    prompt, completion = reply.prompt_tokens or 0, reply.completion_tokens or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def output_message(reply_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": reply_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def response(
    *,
    id: str,
    thread_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage_: dict[str, Any] | None,
    request: dict[str, Any],
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "conversation": {"id": thread_id},
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": {},
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls") or False,
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": (request.get("reasoning") or {}).get("effort"), "summary": None},
        "store": True,
        "temperature": request.get("temperature"),
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "none",
        "tools": [],
        "top_p": request.get("top_p"),
        "truncation": "auto",  # memchat always fits the conversation to its budget
        "usage": usage_,
    }


def finish_reason(reply: Reply) -> str:
    """Chat Completions' finish reason for a turn's reply: `length` when it stopped at max_tokens."""
    return "length" if reply.finish_reason == "length" else "stop"


def outcome(reply: Reply) -> tuple[str, str | None]:
    """(status, incomplete reason) of a response for a turn's reply, as OpenAI reports a reply
    that stopped at max_output_tokens: incomplete, though memchat keeps it as complete."""
    return ("incomplete", "max_output_tokens") if reply.finish_reason == "length" else ("completed", None)


def stored_response(reply: MessagePublic) -> dict[str, Any]:
    """A reply read back (`GET /v1/responses/{id}`): incomplete when it stopped at its
    max_tokens (as when it was made) or its turn was interrupted."""
    status = item_status(reply)
    if status == "completed":
        reason = None
    else:
        reason = "max_output_tokens" if reply.finish_reason == "length" else "interrupted"
    return response(
        id=response_id(reply.thread_id, reply.position),
        thread_id=reply.thread_id,
        created_at=seconds(reply.created_at),
        model=reply.model or "",
        status=status,
        output=[output_message(item_id(reply.thread_id, reply.position), reply.content, status)],
        usage_=usage(reply),
        request={},
        incomplete_reason=reason,
    )


def chat_completion(reply: MessagePublic, model: str, finish_reason: str = "stop") -> dict[str, Any]:
    prompt, completion = reply.prompt_tokens or 0, reply.completion_tokens or 0
    return {
        "id": chat_id(reply.thread_id, reply.position),
        "object": "chat.completion",
        "created": seconds(reply.created_at),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "system_fingerprint": None,
        "memchat": {"thread": reply.thread_id, "position": reply.position},
    }


def chat_chunk(
    chunk_id: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
