"""memchat's Markdown: a transcript to read (title, settings, each message under a heading with
its role, time and model; undone and cut-off turns marked; summaries after the conversation)
that reads back losslessly, and only as written.

Reading back does not parse the prose. Before each block sits an HTML comment (invisible once
rendered) holding the block's record as one line of JSON, with the length of the text that
follows its heading; the text itself is written as it is, so a message may hold any Markdown,
code fences and lines that look like memchat's own included. Everything but a thread's own id
and the token counts (counted again on import) is kept: export, import, export gives the same
file. Built from and into memchat's own JSON (`native`), with the standard library only.

What is imported is what the reader sees, or nothing: each comment holds a SHA-256 of exactly
what its block imports (the record, its length field included, and the text), a closing comment
holds one over the thread's block digests in order (so a block deleted, added or moved shows),
and every visible line (title, settings, headings) must be what memchat writes for the records.
The digests are not keyed: they show an edit, not who made the file. A file without them was
written before they were, and is refused with a request to export it again.

Agent items read as a person would say them: a heading names a function call (`call get_weather
(call_1)`), a tool's output (`output of call_1`) or reasoning, and the text under it is the item's
text (a call's is `name(arguments)`). An image or a file is a line under its message's text,
`→ image (image/png, 2,056 bytes): [attachment 7630fc84b891](#attachment-7630fc84b891)`, linking
to the thread's `## Attachments`, where each blob the thread refers to is written once, as base64
in a code block, under the heading the link names; a transcript is whole by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TextIO

from memchat.errors import InvalidInput
from memchat.transfer import check_size, decoded

THREAD, MESSAGE, SUMMARY = "<!-- memchat-thread ", "<!-- memchat-message ", "<!-- memchat-summary "
ATTACHMENT = "<!-- memchat-attachment "
CLOSING = "<!-- memchat-end "
END = " -->"
SUMMARIES_HEADING = "## Summaries\n\n"
ATTACHMENTS_HEADING = "## Attachments\n\n"
SHORT_HASH = 12
"""Hex digits of a blob's SHA-256 that name its attachment in the text (the record holds all 64)."""
BASE64_WIDTH = 76
Blob = Callable[[str], tuple[str, bytes]]
"""Gives a blob's media type and bytes by its SHA-256."""
_HEADER_FIELDS = (
    "title",
    "model",
    "system",
    "budget",
    "policy",
    "recall",
    "recall_embeddings",
    "summary_model",
    "summary_share",
    "summary_prompt",
    "api_base",
    "labels",
    "forked_from",
    "source",
    "created_at",
    "updated_at",
)


def write_thread(
    header: dict[str, Any],
    messages: Iterable[dict[str, Any]],
    summaries: list[dict[str, Any]],
    out: TextIO,
    *,
    blob: Blob | None = None,
) -> None:
    """One thread, from its export (`native`): the header fields, its ChatML messages (a leading
    system message is the header's `system`, written once: the thread's items all have a
    `position`), its summaries, and the blobs its messages refer to, read with `blob` (default:
    from the export's own `blobs`)."""
    kept = {field: header[field] for field in _HEADER_FIELDS if field in header}
    header_digest = _digest(kept)
    out.write(_comment(THREAD, {**kept, "sha256": header_digest}))
    out.write(_header_text(kept))
    thread_digest = hashlib.sha256(header_digest.encode())
    blocks = 0
    referenced: dict[str, None] = {}
    for index, message in enumerate(messages):
        if index == 0 and message["role"] == "system" and "position" not in message:
            continue
        record = {key: value for key, value in message.items() if key not in ("content", "tokens")}
        referenced.update((part["blob"], None) for part in record.get("parts") or () if part.get("blob"))
        digest = _block(out, MESSAGE, record, _message_heading(record), message["content"], _parts_text(record))
        thread_digest.update(digest.encode())
        blocks += 1
    if summaries:
        out.write(SUMMARIES_HEADING)
        for summary in summaries:
            record = {key: value for key, value in summary.items() if key != "content"}
            thread_digest.update(_block(out, SUMMARY, record, _summary_heading(record), summary["content"]).encode())
            blocks += 1
    if referenced:
        blob = blob or exported_blobs(header.get("blobs") or {})
        out.write(ATTACHMENTS_HEADING)
        for sha in referenced:
            media_type, data = blob(sha)
            record = {"blob": sha, "media_type": media_type, "size": len(data)}
            thread_digest.update(_block(out, ATTACHMENT, record, _attachment_heading(record), _base64(data)).encode())
            blocks += 1
    out.write(_comment(CLOSING, {"blocks": blocks, "sha256": thread_digest.hexdigest()}))


def exported_blobs(blobs: Mapping[str, dict[str, str]]) -> Blob:
    """The blobs of a JSON export (`native`; those of all its threads, for `export --all`, which
    carries each once) as `write_thread` reads them."""

    def blob(sha: str) -> tuple[str, bytes]:
        if sha not in blobs:
            raise InvalidInput(f"export: blob {sha} is not in the export it is written from")
        return blobs[sha]["media_type"], base64.b64decode(blobs[sha]["data"])

    return blob


def _base64(data: bytes) -> str:
    """An attachment's bytes as the text of its block: base64 in a code block, in lines."""
    lines = textwrap.wrap(base64.b64encode(data).decode("ascii"), BASE64_WIDTH) or [""]
    return "```base64\n" + "\n".join(lines) + "\n```"


def _block(out: TextIO, kind: str, record: dict[str, Any], heading: str, text: str, after: str = "") -> str:
    """Writes one block (its comment, heading, text, and the lines its record shows after the
    text) and gives its digest."""
    record = {**record, "length": len(text)}
    digest = _digest({**record, "content": text})
    out.write(_comment(kind, {**record, "sha256": digest}))
    out.write(f"{heading}\n\n{text}\n\n{after}")
    return digest


def _digest(imported: dict[str, Any]) -> str:
    """SHA-256 of what a block (or a thread's header) imports, as canonical JSON (sorted keys, ASCII): the same for the
    record written and the record read back, whatever order or escapes the comment uses."""
    canonical = json.dumps(imported, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _header_text(header: dict[str, Any]) -> str:
    lines = [f"# {_line(header['title']) or '(untitled)'}", "", *_settings(header), "", ""]
    return "\n".join(lines)


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
    parts = [f"## #{record.get('position', '?')}", record["role"]]
    kind = record.get("kind", "message")
    if kind == "function_call":
        parts.append(f"call {_line(record['name'])} ({_line(record['call_id'])})")
    elif kind == "function_call_output":
        parts.append(f"output of {_line(record['call_id'])}")
    elif kind == "reasoning":
        parts.append("reasoning")
    elif kind != "message":
        raise ValueError(kind)
    parts.append(_time(record.get("created_at")))
    if record.get("model"):
        parts.append(_line(record["model"]))
    status = record.get("status", "complete")
    if status != "complete":
        parts.append({"undone": "undone (left out of the memory)", "partial": "partial (cut off)"}.get(status, status))
    if record.get("finish_reason") == "length":
        parts.append("stopped at its max tokens")
    return " · ".join(parts)


def _parts_text(record: dict[str, Any]) -> str:
    """A line for each image or file of a message, after its text: a link to its attachment, or
    its URL."""
    lines = []
    for part in record.get("parts") or ():
        if part["type"] in ("text", "refusal"):
            continue
        name = f"{_line(part['filename'])}, " if part.get("filename") else ""
        if part.get("blob"):
            short = str(part["blob"])[:SHORT_HASH]
            lines.append(
                f"→ {part['type']} ({name}{_line(part['media_type'])}, {part['size']:,} bytes): "
                f"[attachment {short}](#attachment-{short})\n\n"
            )
        else:
            lines.append(f"→ {part['type']} ({name.removesuffix(', ') or 'by URL'}): <{_line(part['url'])}>\n\n")
    return "".join(lines)


def _attachment_heading(record: dict[str, Any]) -> str:
    return f"### Attachment {str(record['blob'])[:SHORT_HASH]}"


def _summary_heading(record: dict[str, Any]) -> str:
    return (
        f"### Summary of #{record['first_position']}–#{record['last_position']} · "
        f"{_time(record.get('created_at'))} · {_line(record.get('model'))}"
    )


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


SUFFIXES = (".md", ".markdown")
"""File names an import without `--format` reads as memchat's Markdown, whatever they begin with
(so that an edited export is refused naming its line, not as JSON)."""


def is_markdown_export(raw: bytes, name: str | None = None) -> bool:
    """Whether an import's bytes are memchat's Markdown: they begin (past blank lines) with a
    thread's comment, as `write_thread` writes it, or the file is named as Markdown is."""
    named = name is not None and name.lower().endswith(SUFFIXES)
    return named or raw.lstrip().startswith(THREAD.encode())


def parse(raw: str | bytes) -> list[dict[str, Any]]:
    """The threads of memchat's Markdown (text, or a file's bytes), as memchat's own JSON (what
    `native` imports), or InvalidInput naming the first line that is not as memchat wrote it."""
    check_size(len(raw))
    reader = _Reader(decoded(raw) if isinstance(raw, bytes) else raw)
    if THREAD not in reader.text:
        raise InvalidInput(
            "import: this is not memchat's Markdown (no `<!-- memchat-thread ... -->` line); nothing was imported"
        )
    threads = []
    while reader.skip_blank_lines():
        if not reader.text.startswith(THREAD, reader.at):
            raise reader.changed("text that memchat did not write outside its threads")
        threads.append(reader.thread())
    return threads


class _Reader:
    """Reads the file as the writer wrote it, in the same order, and stops at the first
    difference."""

    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def line_number(self, at: int | None = None) -> int:
        return self.text.count("\n", 0, self.at if at is None else at) + 1

    def skip_blank_lines(self) -> bool:
        """Past empty lines between threads; False at the end."""
        while self.at < len(self.text):
            end = self.text.find("\n", self.at)
            end = len(self.text) if end < 0 else end
            if self.text[self.at : end].strip():
                return True
            self.at = end + 1
        return False

    def thread(self) -> dict[str, Any]:
        header_line = self.at
        header = self.record(THREAD)
        if "sha256" not in header:
            raise InvalidInput(
                f"import: line {self.line_number(header_line)} of the Markdown begins a thread written by an older "
                "memchat, without the digests that show the file was not edited since: export it again (or import "
                "its JSON export); nothing was imported"
            )
        header_digest = self.verified(header, header_line)
        self.expect(_header_text, header, "a title or setting that is not what its thread's record holds")
        thread_digest = hashlib.sha256(header_digest.encode())
        messages, summaries, attachments = [], [], []
        while self.text.startswith(MESSAGE, self.at):
            messages.append(self.block(MESSAGE, _message_heading, thread_digest, _parts_text))
        if self.text.startswith(SUMMARIES_HEADING, self.at):
            self.at += len(SUMMARIES_HEADING)
            while self.text.startswith(SUMMARY, self.at):
                summaries.append(self.block(SUMMARY, _summary_heading, thread_digest))
            if not summaries:
                raise self.changed("a summaries heading with no summary under it")
        if self.text.startswith(ATTACHMENTS_HEADING, self.at):
            self.at += len(ATTACHMENTS_HEADING)
            while self.text.startswith(ATTACHMENT, self.at):
                line = self.at
                attachments.append((line, self.block(ATTACHMENT, _attachment_heading, thread_digest)))
            if not attachments:
                raise self.changed("an attachments heading with no attachment under it")
        if not self.text.startswith(CLOSING, self.at):
            if self.at >= len(self.text):
                raise self.changed("the end of the file where a thread's closing comment belongs (cut short)")
            raise self.changed("text that memchat did not write between its blocks")
        closing_line = self.at
        closing = self.record(CLOSING)
        blocks = len(messages) + len(summaries) + len(attachments)
        if closing.get("blocks") != blocks:
            raise self.changed(
                f"the close of a thread written with another count of blocks than the {blocks} before it "
                "(a block was deleted or added)",
                at=closing_line,
            )
        if closing.get("sha256") != thread_digest.hexdigest():
            raise self.changed("the close of a thread whose blocks are not the ones written, in order", at=closing_line)
        header.pop("sha256")
        thread = {**header, "messages": messages, "summaries": summaries}
        if attachments:
            thread["blobs"] = dict(self.blob(record, line) for line, record in attachments)
        return thread

    def blob(self, record: dict[str, Any], line: int) -> tuple[str, dict[str, str]]:
        """An attachment as the export's `blobs` holds it, its bytes checked against its name."""
        text = record["content"]
        if not (text.startswith("```base64\n") and text.endswith("\n```")):
            raise self.changed("an attachment that is not base64 in a code block", at=line)
        data = "".join(text[len("```base64\n") : -len("\n```")].split("\n"))
        try:
            decoded_data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise self.changed("an attachment that is not base64", at=line) from None
        if hashlib.sha256(decoded_data).hexdigest() != record.get("blob"):
            raise self.changed("an attachment whose bytes are not the blob it names", at=line)
        return record["blob"], {"media_type": record.get("media_type"), "data": data}

    def block(
        self,
        kind: str,
        heading: Callable[[dict[str, Any]], str],
        thread_digest: Any,
        after: Callable[[dict[str, Any]], str] | None = None,
    ) -> dict[str, Any]:
        """One message, summary or attachment: its record and text, checked against its digest,
        then its heading and the lines after its text, checked against the record."""
        block_line = self.at
        record = self.record(kind)
        length = record.get("length")
        heading_line = self.at
        heading_end = self.text.find("\n", heading_line)
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or length < 0
            or heading_end < 0
            or not self.text.startswith("\n", heading_end + 1)
        ):
            raise self.changed("a block without its heading or length")
        start = heading_end + 2
        if not self.text.startswith("\n\n", start + length):
            self.at = start
            raise self.changed("a text that is not the length its comment gives")
        record["content"] = self.text[start : start + length]
        thread_digest.update(self.verified(record, block_line).encode())
        self.expect(lambda shown: heading(shown) + "\n\n", record, "a heading that is not what its block's record says")
        self.at = start + length + 2
        if after is not None:
            self.expect(after, record, "a line after a text that is not what its block's record says")
        del record["length"], record["sha256"]
        return record

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

    def verified(self, record: dict[str, Any], line_at: int) -> str:
        """The record's digest, when it is the one its comment holds."""
        written = record.get("sha256")
        try:
            digest = _digest({key: value for key, value in record.items() if key != "sha256"})
        except RecursionError:
            raise self.changed("a memchat comment whose JSON is nested too deeply", at=line_at) from None
        if written != digest:
            raise self.changed("a block whose record or text does not match its digest", at=line_at)
        return digest

    def expect(self, render: Callable[[dict[str, Any]], str], record: dict[str, Any], what: str) -> None:
        """Past the visible text memchat writes for `record`, when the file holds exactly that."""
        try:
            expected = render(record)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self.changed("a memchat comment whose record memchat did not write", at=self.at - 1) from None
        found = self.text[self.at : self.at + len(expected)]
        if found != expected:
            self.at += len(os.path.commonprefix([found, expected]))
            raise self.changed(what)
        self.at += len(expected)

    def changed(self, what: str, *, at: int | None = None) -> InvalidInput:
        return InvalidInput(
            f"import: line {self.line_number(at)} of the Markdown has {what}: it was changed after memchat wrote it; "
            "nothing was imported"
        )
