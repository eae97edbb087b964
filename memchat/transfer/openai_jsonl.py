"""OpenAI's JSONL conversations (the fine-tuning and evals format): one `{"messages": [...]}`
object a line, each becoming a memchat thread (memchat's own JSON, with its `source`).

A line that is not JSON, or not such an object, refuses the whole file (nothing is imported);
so does a `tool` message answering no call before it, or a call left without its output before
the conversation goes on. Assistant `tool_calls` and `tool` messages become function calls and
their outputs, images and files parts of their message (`memchat.items.from_chat_messages`);
what memchat cannot keep inside a good line (the older `function_call` shape, audio and other
parts, a second system prompt) is left out and reported. A line's source is the digest of its messages, so the same
conversation imported again, from this file or another, is found and not copied twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from memchat.errors import InvalidInput
from memchat.items import from_chat_messages
from memchat.transfer import SourceHistory, check_size, exported_items

SOURCE_PREFIX = "openai-jsonl:"
TITLE_CHARACTERS = 80


def read(path: str | Path) -> SourceHistory:
    path = Path(path)
    try:
        check_size(path.stat().st_size)
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InvalidInput(f"import: cannot read {path}: {exc.strerror}") from None
    history = SourceHistory([], [])
    first_line_of: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        messages = _messages(raw, number)
        source = (
            SOURCE_PREFIX
            + hashlib.sha256(
                json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            ).hexdigest()[:32]
        )
        if source in first_line_of:
            history.notes.append(f"line {number}: the same conversation as line {first_line_of[source]}")
            continue
        first_line_of[source] = number
        thread = _thread(messages, number, history.notes)
        if thread is not None:
            history.threads.append({"source": source, **thread})
    if not history.threads and not history.notes:
        raise InvalidInput(f'import: {path} holds no conversations (one {{"messages": [...]}} object a line)')
    return history


def _messages(raw: bytes, number: int) -> list[Any]:
    try:
        line = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"import: line {number} is not JSON ({exc}); nothing was imported") from None
    except RecursionError:
        raise InvalidInput(
            f"import: line {number} is nested too deeply to be a conversation; nothing was imported"
        ) from None
    if not isinstance(line, dict) or not isinstance(line.get("messages"), list):
        raise InvalidInput(f'import: line {number} is not a {{"messages": [...]}} object; nothing was imported')
    return line["messages"]


def _thread(messages: list[Any], number: int, notes: list[str]) -> dict[str, Any] | None:
    system = None
    kept: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    blobs: dict[str, dict[str, str]] = {}
    waiting: dict[str, int] = {}
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidInput(f"import: line {number}: messages[{index}] has no role; nothing was imported")
        role = message["role"]
        if role in ("system", "developer"):
            text = _text(message.get("content"), left_out)
            if system is None and not kept:
                system = text
            else:
                left_out["system prompts part-way (memchat keeps the first)"] += 1
            continue
        if role not in ("user", "assistant", "tool"):
            left_out[f"{role} messages"] += 1
            continue
        if message.get("function_call"):
            left_out["function_call (the shape before tool_calls)"] += 1
        items = _items(message, role, index, number, left_out)
        if not items:
            left_out[f"{role} messages with no text"] += 1
            continue
        for item in items:
            if item.kind == "function_call":
                waiting[item.call_id] = index
            elif item.kind == "function_call_output":
                if waiting.pop(item.call_id, None) is None:
                    raise InvalidInput(
                        f"import: line {number}: messages[{index}] is a tool message answering no call before it "
                        f"(tool_call_id {item.call_id}); nothing was imported"
                    )
            elif waiting:
                call_id = min(waiting, key=waiting.__getitem__)
                raise InvalidInput(
                    f"import: line {number}: messages[{waiting[call_id]}] calls {call_id}, and no tool message "
                    f"answers it before messages[{index}]; nothing was imported"
                )
        kept.extend(exported_items(items, blobs))
    for what, count in sorted(left_out.items()):
        notes.append(f"line {number}: {count} {what} left out")
    if not kept:
        notes.append(f"line {number}: no user or assistant text; not imported")
        return None
    first_user = next((m["content"] for m in kept if m["role"] == "user"), kept[0]["content"])
    title = " ".join(first_user.split())
    thread: dict[str, Any] = {
        "title": title if len(title) <= TITLE_CHARACTERS else title[: TITLE_CHARACTERS - 1] + "…",
        "system": system,
        "messages": kept,
    }
    if blobs:
        thread["blobs"] = blobs
    return thread


KEPT_PARTS = {"user": ("text", "image_url", "file"), "assistant": ("text", "refusal"), "tool": ("text",)}
"""The content parts of each role that memchat keeps (`memchat.items.from_chat_messages`)."""


def _items(message: dict[str, Any], role: str, index: int, number: int, left_out: Counter[str]) -> list[Any]:
    """The message's items; parts memchat cannot keep are left out (and counted) first."""
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
                part = {"type": "text", "text": part["text"]}
            elif kind not in KEPT_PARTS[role]:
                left_out[f"{kind or type(part).__name__} parts"] += 1
                continue
            parts.append(part)
        content = parts
    elif content is not None and not isinstance(content, str):
        left_out["contents that are neither text nor parts"] += 1
        content = None
    shown = {key: value for key, value in message.items() if key in ("role", "tool_call_id", "tool_calls", "refusal")}
    if role == "assistant" and not content and not message.get("tool_calls") and not message.get("refusal"):
        return []
    if role != "assistant" and not content:
        if role == "user":
            return []
        content = ""
    try:
        return from_chat_messages([{**shown, "content": content}])
    except InvalidInput as exc:
        where = str(exc).replace("messages[0]", f"messages[{index}]", 1)
        raise InvalidInput(f"import: line {number}: {where}; nothing was imported") from None


def _text(content: Any, left_out: Counter[str]) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if (
                isinstance(part, dict)
                and part.get("type") in ("text", "input_text", "output_text")
                and isinstance(part.get("text"), str)
            ):
                pieces.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                left_out[f"{kind} parts"] += 1
        return "\n".join(pieces)
    left_out["contents that are neither text nor parts"] += 1
    return ""
