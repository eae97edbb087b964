"""The reply of the built-in offline model `memchat/echo`.

It answers with the user's last message and a report of the context it was sent, so a user
with no key and no network can watch memory and the token budget at work.
"""

from __future__ import annotations

ECHO_MODEL = "memchat/echo"
PREVIEW_CHARS = 60


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def echo_reply(messages: list[dict], context_tokens: int) -> str:
    conversation = [m for m in messages if m.get("role") != "system"]
    last_user = next((m for m in reversed(conversation) if m.get("role") == "user"), None)
    said = str(last_user.get("content", "")) if last_user else ""
    count = len(messages)
    report = f"[memchat/echo received {count} message{'s' * (count != 1)}, {context_tokens} tokens of context"
    if len(conversation) > 1:
        report += f"; the oldest it remembers: {_preview(str(conversation[0].get('content', '')))!r}"
    return f"You said: {said}\n{report}]"
