"""OpenAI's JSONL conversations (the fine-tuning and evals format): one `{"messages": [...]}`
object a line, each becoming a memchat thread (memchat's own JSON, with its `source`).

A line that is not JSON, or not such an object, refuses the whole file (nothing is imported);
what memchat cannot keep inside a good line (tool calls and results, images, a second system
prompt) is left out and reported. A line's source is the digest of its messages, so the same
conversation imported again, from this file or another, is found and not copied twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from memchat.errors import InvalidInput
from memchat.transfer import SourceHistory, check_size

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
    kept: list[dict[str, str]] = []
    left_out: Counter[str] = Counter()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidInput(f"import: line {number}: messages[{index}] has no role; nothing was imported")
        role = message["role"]
        text = _text(message.get("content"), left_out)
        if role in ("system", "developer"):
            if system is None and not kept:
                system = text
            else:
                left_out["system prompts part-way (memchat keeps the first)"] += 1
            continue
        if role not in ("user", "assistant"):
            left_out[f"{role} messages"] += 1
            continue
        if message.get("tool_calls") or message.get("function_call"):
            left_out["tool calls"] += 1
        if not text:
            left_out[f"{role} messages with no text"] += 1
            continue
        kept.append({"role": role, "content": text})
    for what, count in sorted(left_out.items()):
        notes.append(f"line {number}: {count} {what} left out")
    if not kept:
        notes.append(f"line {number}: no user or assistant text; not imported")
        return None
    first_user = next((m["content"] for m in kept if m["role"] == "user"), kept[0]["content"])
    title = " ".join(first_user.split())
    return {
        "title": title if len(title) <= TITLE_CHARACTERS else title[: TITLE_CHARACTERS - 1] + "…",
        "system": system,
        "messages": kept,
    }


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
