"""Formats in and out: memchat's own JSON (`native`, which writes to the store), its Markdown
transcripts (`markdown`), and the histories people bring from elsewhere (`llm_logs`, `chatgpt`,
`openai_jsonl`), each read into memchat's own JSON so that one import path, local or through a
server, writes them. All but `native` use the standard library and memchat's bottom layer
(`memchat.items` reads agent items) only: a CLI working through a server loads neither
SQLAlchemy nor litellm."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memchat.config import import_limit_bytes
from memchat.errors import InvalidInput
from memchat.results import ImportResult as ImportResult


@dataclass(frozen=True)
class SourceHistory:
    """Conversations read from another tool's history, ready for `Memory.import_`."""

    threads: list[dict]
    """memchat's own JSON, one thread each, with the `source` it came from."""
    notes: list[str]
    """What was left out and why, and what was read otherwise than written (a model name
    litellm does not know), one line each: the import goes on."""


def check_size(size: int) -> None:
    """An import is validated whole, in memory, before anything is written: it has a ceiling."""
    limit = import_limit_bytes()
    if size > limit:
        raise InvalidInput(
            f"import: the input is over the {limit // 2**20} MiB limit; split it, or raise MEMCHAT_IMPORT_MAX_MIB"
        )


def decoded(raw: bytes) -> str:
    """An import's bytes as text: UTF-8, or a one-line refusal naming the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"import: the file is not UTF-8 (byte {exc.start})") from None


ITEM_FIELDS = ("call_id", "name", "arguments", "item_id", "provider_data")


def exported_items(records: Iterable[Any], blobs: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Items read by `memchat.items` (`MessageCreate`) as memchat's own JSON messages: the bytes
    of an image or a file given as data go to `blobs` (the thread's, SHA-256 → media type and
    base64, each once) and the part refers to them, as an export writes them."""
    messages = []
    for record in records:
        message: dict[str, Any] = {"role": record.role, "content": record.content}
        if record.kind != "message":
            message["kind"] = record.kind
        if record.parts is not None:
            message["parts"] = [_blob_part(part, blobs) for part in record.parts]
        for field in ITEM_FIELDS:
            if getattr(record, field) is not None:
                message[field] = getattr(record, field)
        messages.append(message)
    return messages


def blob_part(part: dict[str, Any], data: bytes, blobs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """`part` referring to `data`, kept once in `blobs`."""
    sha = hashlib.sha256(data).hexdigest()
    blobs.setdefault(sha, {"media_type": part["media_type"], "data": base64.b64encode(data).decode("ascii")})
    return {**{key: value for key, value in part.items() if key != "data"}, "blob": sha, "size": len(data)}


def _blob_part(part: dict[str, Any], blobs: dict[str, dict[str, str]]) -> dict[str, Any]:
    return blob_part(part, part["data"], blobs) if "data" in part else part
