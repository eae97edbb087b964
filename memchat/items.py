"""(stand-in until the full module lands) Items as Chat Completions messages."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def to_chat_messages(items: Sequence, blob: Callable[[str], bytes], *, family: str | None) -> list[dict]:
    out: list[dict] = []
    for item in items:
        kind = item.kind
        if kind == "function_call":
            out.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": item.call_id,
                            "type": "function",
                            "function": {"name": item.name, "arguments": item.arguments},
                        }
                    ],
                }
            )
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.content})
        elif kind == "reasoning":
            data = item.provider_data or {}
            if data.get("family") == family and data.get("thinking_blocks"):
                out.append({"role": "assistant", "content": None, "thinking_blocks": data["thinking_blocks"]})
        elif item.parts:
            parts = []
            for part in item.parts:
                if part["type"] in ("text", "refusal"):
                    parts.append({"type": "text", "text": part["text"]})
                elif part["type"] == "image":
                    url = part.get("url") or _data_url(part["media_type"], blob(part["blob"]))
                    parts.append({"type": "image_url", "image_url": {"url": url, "detail": part.get("detail", "auto")}})
                elif part["type"] == "file":
                    parts.append(
                        {
                            "type": "file",
                            "file": {
                                "file_data": _data_url(part["media_type"], blob(part["blob"])),
                                "filename": part.get("filename"),
                            },
                        }
                    )
            out.append({"role": item.role, "content": parts})
        else:
            out.append({"role": item.role, "content": item.content})
    return out
