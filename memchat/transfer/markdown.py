"""memchat's Markdown: a transcript to read (title, settings, each message under a heading with
its role, time and model; undone and cut-off turns marked; summaries after the conversation)
that reads back losslessly.

Reading back does not parse the prose. Before each block sits an HTML comment (invisible once
rendered) holding the block's record as one line of JSON, with the length of the text that
follows its heading; the text itself is written as it is, so a message may hold any Markdown,
code fences and lines that look like memchat's own included. Everything but a thread's own id
and the token counts (counted again on import) is kept: export, import, export gives the same
file. Built from and into memchat's own JSON (`native`), with the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TextIO

from memchat.errors import InvalidInput
from memchat.transfer import check_size, decoded

THREAD, MESSAGE, SUMMARY = "<!-- memchat-thread ", "<!-- memchat-message ", "<!-- memchat-summary "
END = " -->"
_HEADER_FIELDS = (
    "title", "model", "system", "budget", "policy", "recall", "recall_embeddings", "summary_model", "summary_share",
    "summary_prompt", "api_base", "labels", "forked_from", "source", "created_at", "updated_at",
)


def write_thread(
    header: dict[str, Any], messages: Iterable[dict[str, Any]], summaries: list[dict[str, Any]], out: TextIO
) -> None:
    """One thread, from its export (`native`): the header fields, its ChatML messages (a leading
    system message is the header's `system`, written once) and its summaries."""
    kept = {field: header[field] for field in _HEADER_FIELDS if field in header}
    out.write(_comment(THREAD, kept))
    out.write(f"# {_line(kept['title']) or '(untitled)'}\n\n")
    for line in _settings(kept):
        out.write(line + "\n")
    out.write("\n")
    for index, message in enumerate(messages):
        if index == 0 and message["role"] == "system":
            continue
        record = {key: value for key, value in message.items() if key not in ("content", "tokens")}
        _block(out, MESSAGE, record, _message_heading(record), message["content"])
    if summaries:
        out.write("## Summaries\n\n")
        for summary in summaries:
            record = {key: value for key, value in summary.items() if key != "content"}
            heading = (
                f"### Summary of #{record['first_position']}–#{record['last_position']} · "
                f"{_time(record.get('created_at'))} · {_line(record.get('model'))}"
            )
            _block(out, SUMMARY, record, heading, summary["content"])


def _block(out: TextIO, kind: str, record: dict[str, Any], heading: str, text: str) -> None:
    out.write(_comment(kind, {**record, "length": len(text)}))
    out.write(f"{heading}\n\n{text}\n\n")


def _comment(kind: str, record: dict[str, Any]) -> str:
    # "--" appears in JSON only inside strings: escaped, it cannot end the comment early.
    return kind + json.dumps(record, ensure_ascii=False).replace("--", "-\\u002d") + END + "\n"


def _line(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _time(value: str | None) -> str:
    if not value:
        return "?"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _message_heading(record: dict[str, Any]) -> str:
    parts = [f"## #{record.get('position', '?')}", record["role"], _time(record.get("created_at"))]
    if record.get("model"):
        parts.append(_line(record["model"]))
    status = record.get("status", "complete")
    if status != "complete":
        parts.append({"undone": "undone (left out of the memory)", "partial": "partial (cut off)"}.get(status, status))
    return " · ".join(parts)


def _settings(header: dict[str, Any]) -> Iterator[str]:
    yield f"- model: {_line(header['model']) or 'the default'}"
    if header.get("system"):
        yield "- system prompt:"
        yield ""
        for line in str(header["system"]).split("\n"):
            yield f"  > {line}".rstrip()
        yield ""
    yield f"- budget: {header['budget']:,} tokens" if header.get("budget") else "- budget: the model's context"
    memory = f"- memory: {header.get('policy') or 'window'} policy, recall {header.get('recall') or 0}"
    if header.get("recall_embeddings"):
        memory += f" re-ranked by {_line(header['recall_embeddings'])}"
    if header.get("summary_model"):
        memory += f", summaries by {_line(header['summary_model'])}"
    if header.get("summary_share"):
        memory += f" in {header['summary_share']:.0%} of the budget"
    if header.get("summary_prompt"):
        memory += ", own summary instructions"
    yield memory
    if header.get("api_base"):
        yield f"- provider endpoint: {_line(header['api_base'])}"
    if header.get("labels"):
        yield "- labels: " + ", ".join(f"{_line(k)}={_line(v)}" for k, v in header["labels"].items())
    origin = header.get("forked_from")
    if origin:
        yield f"- forked from {_line(origin.get('thread'))} at #{origin.get('at')}"
    if header.get("source"):
        yield f"- imported from {_line(header['source'])}"
    yield f"- created {_time(header.get('created_at'))}, last activity {_time(header.get('updated_at'))}"


def parse(raw: str | bytes) -> list[dict[str, Any]]:
    """The threads of memchat's Markdown (text, or a file's bytes), as memchat's own JSON (what
    `native` imports)."""
    check_size(len(raw))
    reader = _Reader(decoded(raw) if isinstance(raw, bytes) else raw)
    threads = []
    while reader.skip_prose():
        threads.append(reader.thread())
    if not threads:
        raise InvalidInput("import: this is not memchat's Markdown (no `<!-- memchat-thread ... -->` line); nothing was imported")
    return threads


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def line_number(self) -> int:
        return self.text.count("\n", 0, self.at) + 1

    def skip_prose(self) -> bool:
        """Past headings and settings, to the next memchat comment; False at the end."""
        while self.at < len(self.text):
            if self.text.startswith("<!-- memchat-", self.at):
                return True
            end = self.text.find("\n", self.at)
            self.at = len(self.text) if end < 0 else end + 1
        return False

    def thread(self) -> dict[str, Any]:
        header = self.record(THREAD)
        messages, summaries = [], []
        while self.skip_prose() and not self.text.startswith(THREAD, self.at):
            if self.text.startswith(MESSAGE, self.at):
                record = self.record(MESSAGE)
                record["content"] = self.content(record)
                messages.append(record)
            elif self.text.startswith(SUMMARY, self.at):
                record = self.record(SUMMARY)
                record["content"] = self.content(record)
                summaries.append(record)
            else:
                raise self.changed("a memchat comment of an unknown kind")
        return {**header, "messages": messages, "summaries": summaries}

    def record(self, kind: str) -> dict[str, Any]:
        end = self.text.find("\n", self.at)
        end = len(self.text) if end < 0 else end
        line = self.text[self.at : end]
        if not line.endswith(END):
            raise self.changed("a memchat comment that does not end on its line")
        try:
            record = json.loads(line[len(kind) : -len(END)])
        except (ValueError, RecursionError):
            raise self.changed("a memchat comment whose JSON does not read") from None
        if not isinstance(record, dict):
            raise self.changed("a memchat comment that holds no record")
        self.at = end + 1
        return record

    def content(self, record: dict[str, Any]) -> str:
        """The text after the block's heading line and blank line: exactly `length` characters."""
        length = record.pop("length", None)
        heading_end = self.text.find("\n", self.at)
        if not isinstance(length, int) or length < 0 or heading_end < 0 or not self.text.startswith("\n", heading_end + 1):
            raise self.changed("a block without its heading or length")
        start = heading_end + 2
        if not self.text.startswith("\n\n", start + length):
            self.at = start
            raise self.changed("a text that is not the length its comment gives")
        self.at = start + length + 2
        return self.text[start : start + length]

    def changed(self, what: str) -> InvalidInput:
        return InvalidInput(
            f"import: line {self.line_number()} of the Markdown has {what}: it was changed after memchat wrote it; "
            "nothing was imported"
        )
