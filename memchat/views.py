"""The JSON forms of memchat's records that more than one face prints: `--json` in the CLI and
memchat's own HTTP API (`/memchat/v1`) give the same shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memchat.context import Context
from memchat.storage.fulltext import highlights
from memchat.times import as_utc

if TYPE_CHECKING:
    from memchat.records import ThreadPublic
    from memchat.results import SearchHit

NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "unknown_cost": 0}
"""A thread no model was called for has spent nothing, and knows it."""


def thread_json(thread: ThreadPublic, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {**thread.model_dump(mode="json"), "usage": usage or NO_USAGE}


def context_json(result: Context) -> dict[str, Any]:
    return {
        "model": result.model,
        "tokenizer": result.tokenizer,
        "budget": result.budget,
        "room": result.room,
        "prompt_tokens": result.prompt_tokens,
        "framing_tokens": result.framing_tokens,
        "policy": result.policy,
        "summary_due": list(result.summary_due) if result.summary_due else None,
        "dropped": len(result.dropped),
        "entries": [
            {
                "role": e.role,
                "kind": e.kind,
                "position": e.position,
                "span": list(e.span) if e.span else None,
                "recalled": list(e.recalled),
                "tokens": e.tokens,
                "kept": e.kept,
                "item": e.item,
                "masked": e.masked,
                "content": e.content,
            }
            for e in result.entries
        ],
        "messages": result.messages,
    }


def search_json(hit: SearchHit) -> dict[str, Any]:
    snippet, spans = highlights(hit.snippet)
    return {
        "thread": hit.message.thread_id,
        "title": hit.thread_title,
        "position": hit.message.position,
        "role": hit.message.role,
        "status": hit.message.status,
        "created_at": as_utc(hit.message.created_at).isoformat(),
        "score": hit.score,
        "snippet": snippet,
        "highlights": [list(span) for span in spans],
    }
