"""memchat's records in OpenAI's shapes (conversations, items, responses, chat completions) and
the ids that name them. A conversation id is the thread's own id (so the CLI and the API name the
same thread); an item is named by the id a client gave it, else by its thread and position (#N
in `memchat show`), which are known before the reply is stored and never change, with the
prefix of its kind: `msg_<thread>_<N>`, `fc_<thread>_<N>` (a function call), `fco_<thread>_<N>`
(its output), `rs_<thread>_<N>` (reasoning). A response is named by its first item, response
`resp_<thread>_<N>`; a chat completion `chatcmpl-<thread>-<N>`. The items themselves are
`memchat.items`' shapes. Pure functions: no database, no HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from memchat import items
from memchat.errors import NotFound
from memchat.records import MessagePublic, ThreadPublic
from memchat.times import as_utc
from memchat.turn import Reply

ITEM_PREFIX = "msg_"
ITEM_PREFIXES = {"message": ITEM_PREFIX, "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}
RESPONSE_PREFIX = "resp_"
CHAT_PREFIX = "chatcmpl-"


def item_id(thread_id: str, position: int, kind: str = "message") -> str:
    return f"{ITEM_PREFIXES[kind]}{thread_id}_{position}"


def shown_id(message: MessagePublic) -> str:
    """The id an item is shown with: the one its client gave it, else one made of its place."""
    return message.item_id or item_id(message.thread_id, message.position, message.kind)


def item_place(identifier: str) -> tuple[str, int] | None:
    """(thread id, position) an item id made by `item_id` names; None for any other id."""
    for prefix in ITEM_PREFIXES.values():
        if identifier.startswith(prefix):
            try:
                return message_named(identifier, prefix, "item")
            except NotFound:
                return None
    return None


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


def blob_reader(read: Callable[[Sequence[str]], dict[str, tuple[str, bytes]]]) -> items.Blob:
    """The bytes of a blob by its hash, read with `read` (`Memory.blobs`) when first asked for:
    an item read back holds an image's data only when `include` asks for its URL."""
    known: dict[str, bytes] = {}

    def blob(sha256: str) -> bytes:
        if sha256 not in known:
            found = read([sha256])
            if sha256 not in found:
                raise NotFound(f"the image or file {sha256[:12]} is no longer stored")
            known[sha256] = found[sha256][1]
        return known[sha256]

    return blob


def item(message: MessagePublic, blob: items.Blob, include: Iterable[str] = ()) -> dict[str, Any]:
    """A stored item as the Conversations and Responses APIs give it back, with memchat's own
    fields apart (`created_at`, and `memchat`: its place in the thread and memchat's status)."""
    shown = items.to_responses_item(message, blob, item_id=shown_id(message), include=include)
    shown["created_at"] = seconds(message.created_at)
    shown["memchat"] = {"position": message.position, "status": message.status}
    return shown


def output_items(stored: Sequence[MessagePublic], blob: items.Blob, include: Iterable[str] = ()) -> list[dict]:
    """A response's `output`: the items its reply stored, in order, in OpenAI's shapes."""
    return [items.to_responses_item(message, blob, item_id=shown_id(message), include=include) for message in stored]


def item_list(
    messages: list[MessagePublic], has_more: bool, blob: items.Blob, include: Iterable[str] = ()
) -> dict[str, Any]:
    data = [item(message, blob, include) for message in messages]
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
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def responses_tools(tools: Sequence[dict] | None) -> list[dict[str, Any]]:
    """Function tools checked by `memchat.items.check_tools` (Chat Completions' shape) in the
    Responses API's flat shape, as a response repeats them."""
    return [
        {
            "type": "function",
            "name": tool["function"]["name"],
            "description": tool["function"].get("description"),
            "parameters": tool["function"].get("parameters"),
            "strict": tool["function"].get("strict"),
        }
        for tool in tools or ()
    ]


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
        "tool_choice": request.get("tool_choice") or ("auto" if request.get("tools") else "none"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": "auto",  # memchat always fits the conversation to its budget
        "usage": usage_,
    }


def finish_reason(reply: Reply) -> str:
    """Chat Completions' finish reason for a turn's reply: `length` when it stopped at max_tokens."""
    return "length" if reply.finish_reason == "length" else "stop"


def outcome(reply: Reply) -> tuple[str, str | None]:
    """(status, incomplete reason) of a response for a turn's reply, as OpenAI reports a reply
    that stopped at max_output_tokens: incomplete, though memchat keeps it as complete. A reply
    of function calls alone is completed: the client runs them and sends their outputs."""
    return ("incomplete", "max_output_tokens") if reply.finish_reason == "length" else ("completed", None)


def reply_usage(stored: Sequence[MessagePublic]) -> dict[str, Any]:
    """A response's usage: its model call's, kept on the reply's text (else on its first call)."""
    counted = next((message for message in stored if message.prompt_tokens is not None), stored[0])
    return usage(counted)


def stored_response(stored: Sequence[MessagePublic], blob: items.Blob) -> dict[str, Any]:
    """A reply read back (`GET /v1/responses/{id}`), every item it stored: incomplete when it
    stopped at its max_tokens (as when it was made) or its turn was interrupted."""
    first = stored[0]
    statuses = {items.item_status(message) for message in stored}
    status = "completed" if statuses == {"completed"} else "incomplete"
    if status == "completed":
        reason = None
    else:
        cut = any(message.finish_reason == "length" for message in stored)
        reason = "max_output_tokens" if cut else "interrupted"
    return response(
        id=response_id(first.thread_id, first.position),
        thread_id=first.thread_id,
        created_at=seconds(first.created_at),
        model=first.model or "",
        status=status,
        output=output_items(stored, blob),
        usage_=reply_usage(stored),
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
