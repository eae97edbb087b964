"""Formats in and out: memchat's own JSON (`native`, which writes to the store), its Markdown
transcripts (`markdown`), and the histories people bring from elsewhere (`llm_logs`, `chatgpt`,
`openai_jsonl`), each read into memchat's own JSON so that one import path, local or through a
server, writes them. All but `native` use the standard library only: a CLI working through a
server loads neither SQLAlchemy nor litellm."""

from __future__ import annotations

from dataclasses import dataclass

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
