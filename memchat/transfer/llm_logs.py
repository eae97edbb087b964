"""Simon Willison's `llm` keeps every prompt and response in a SQLite logs database; this reads
its conversations as memchat threads (memchat's own JSON, each with its `source`).

Two layouts exist: llm up to 0.2x logged each exchange as a row of `responses` grouped by
`conversations`; newer llm keeps a content-addressed message store (`threads` pointing at the
tip of a chain of `messages`, whose text is in `parts`, and `turns` recording each model call).
Both are read, and a conversation found in both is read once, from the newer. The database is
opened read-only: llm's own files are never changed.

In the message store, an assistant's tool calls become function calls and a `tool` message's
results their outputs (an exception a tool raised is its output's text), reasoning becomes a
reasoning item, and attachments (images, files: llm's `attachments` table, or the file at their
path when llm kept only that) become parts of their message; a call no result answers, or a
result for no call, is left out and reported, as are attachments whose bytes are gone.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from memchat.config import llm_user_path
from memchat.errors import InvalidInput
from memchat.transfer import SourceHistory, blob_part

SOURCE_PREFIX = "llm:"
_OPENAI_ALIASES = {
    "3.5": "gpt-3.5-turbo",
    "chatgpt": "gpt-3.5-turbo",
    "chatgpt-16k": "gpt-3.5-turbo-16k",
    "3.5-16k": "gpt-3.5-turbo-16k",
    "4": "gpt-4",
    "gpt4": "gpt-4",
    "4-32k": "gpt-4-32k",
    "4t": "gpt-4-turbo",
    "4o": "gpt-4o",
    "4o-mini": "gpt-4o-mini",
}
_OPENAI_NAMES = re.compile(r"^(gpt-|chatgpt-|o1|o3|o4)")
_GEMINI_NAMES = re.compile(r"^gemini-")


def default_path() -> Path:
    """Where llm keeps its logs: `LLM_USER_PATH`, else its user directory (as llm finds it)."""
    folder = llm_user_path()
    if folder:
        return folder / "logs.db"
    import click  # Typer's own dependency; llm asks it the same question

    return Path(click.get_app_dir("io.datasette.llm")) / "logs.db"


def litellm_model(name: str | None) -> str | None:
    """An llm model id as litellm names the same model, where that is unambiguous: OpenAI's
    models (and llm's aliases for them) and Gemini's; ids that already name their provider
    (`anthropic/claude-...`, `openrouter/...`) are litellm's form already. Anything else (a
    local model, a plugin's own naming) is kept as written."""
    if not name or "/" in name:
        return name
    name = _OPENAI_ALIASES.get(name, name)
    if _OPENAI_NAMES.match(name):
        return f"openai/{name}"
    if _GEMINI_NAMES.match(name):
        return f"gemini/{name}"
    return name


def read(path: str | Path | None = None) -> SourceHistory:
    """Every conversation in llm's logs database at `path` (default: llm's own)."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise InvalidInput(f"import: no llm logs database at {path}")
    try:
        database = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InvalidInput(f"import: cannot open {path}: {exc}") from None
    database.row_factory = _text_only(path)
    try:
        tables = {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if not {"threads", "turns", "messages", "parts"} <= tables and not {"responses", "conversations"} <= tables:
            raise InvalidInput(
                f"import: {path} is not an llm logs database (it has neither llm's threads nor its responses)"
            )
        history = SourceHistory([], [])
        seen: set[str] = set()
        if {"threads", "turns", "messages", "parts"} <= tables:
            _MessageStore(database, tables, history).read(seen)
        if {"responses", "conversations"} <= tables:
            _read_responses(database, tables, history, seen)
        _default_model_where_unknown(history)
        return history
    except sqlite3.Error as exc:
        raise InvalidInput(f"import: cannot read {path} as an llm logs database: {exc}") from None
    finally:
        database.close()


def _text_only(path: Path) -> Callable[[sqlite3.Cursor, tuple], sqlite3.Row]:
    """Rows as llm writes them, where a column never holds bytes: a BLOB in one is a damaged
    database, refused, where text would have been expected."""

    def row(cursor: sqlite3.Cursor, values: tuple) -> sqlite3.Row:
        for column, value in zip(cursor.description, values):
            if isinstance(value, bytes):
                raise InvalidInput(
                    f"import: {path} is damaged: its column {column[0]} holds bytes where llm writes text; "
                    "nothing was imported"
                )
        return sqlite3.Row(cursor, values)

    return row


def _default_model_where_unknown(history: SourceHistory) -> None:
    """A thread goes on with its last reply's model when litellm can name it; otherwise with
    memchat's default (its replies keep the model as llm wrote it), said once a model."""
    unknown: Counter[str] = Counter()
    for thread in history.threads:
        model = thread["model"]
        if model and "/" not in model:
            unknown[model] += 1
            thread["model"] = None
    for model, count in sorted(unknown.items()):
        history.notes.append(
            f"model {model!r} ({count} thread{'s' if count > 1 else ''}): no litellm name for it is certain; kept on "
            "its replies, the thread goes on with the default model (set one with `memchat set THREAD --model M`)"
        )


def _moment(text: str | None) -> datetime | None:
    """llm's times are UTC, written with or without an offset."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _reply(text: str, turn: dict[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if turn is None:
        return message
    started = _moment(turn.get("datetime_utc"))
    duration = turn.get("duration_ms")
    finished = (
        started + timedelta(milliseconds=duration)
        if started and isinstance(duration, int) and duration >= 0
        else started
    )
    if finished:
        message["created_at"] = _iso(finished)
    message["model"] = litellm_model(turn.get("resolved_model") or turn.get("model"))
    message["usage"] = {
        "prompt_tokens": _count(turn.get("input_tokens")),
        "completion_tokens": _count(turn.get("output_tokens")),
    }
    if isinstance(duration, int) and duration >= 0:
        message["latency_ms"] = duration
    return message


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _thread(source: str, title: str | None, system: str | None, messages: list[dict]) -> dict[str, Any]:
    """The thread goes on with its last reply's model."""
    return {
        "source": source,
        "title": (title or "").strip()[:500],
        "model": next((m["model"] for m in reversed(messages) if m.get("model")), None),
        "system": system,
        "created_at": messages[0].get("created_at") if messages else None,
        "updated_at": messages[-1].get("created_at") if messages else None,
        "messages": messages,
    }


class _MessageStore:
    """llm's content-addressed message store: a thread names the tip of a chain of messages."""

    def __init__(self, database: sqlite3.Connection, tables: set[str], history: SourceHistory):
        self.database = database
        self.history = history
        self.fragments = (
            dict(database.execute("SELECT id, content FROM fragments").fetchall()) if "fragments" in tables else {}
        )
        self.parents: dict[str, str | None] = {}
        self.roles: dict[str, str] = {}
        for row in database.execute("SELECT hash, parent_hash, role FROM messages"):
            self.parents[row["hash"]] = row["parent_hash"]
            self.roles[row["hash"]] = row["role"]
        self.parts: dict[str, list[sqlite3.Row]] = {}
        for row in database.execute(
            "SELECT message_hash, position, type, tool_name, text, payload FROM parts ORDER BY message_hash, position"
        ):
            self.parts.setdefault(row["message_hash"], []).append(row)
        self.has_attachments = "attachments" in tables
        self.blobs: dict[str, dict[str, str]] = {}
        turns = [dict(row) for row in database.execute("SELECT * FROM turns")]
        self.replies = {turn["tip_message_hash"]: turn for turn in turns}
        """The model call that ended in each message (a reply): its model, tokens and times."""
        self.asked = {turn["parent_message_hash"]: turn for turn in turns}
        """The model call each message (a prompt) was the last input of."""

    def read(self, seen: set[str]) -> None:
        chains: dict[str, list[str]] = {}
        threads = self.database.execute(
            "SELECT id, name, tip_message_hash, forked_from FROM threads ORDER BY datetime_utc, id"
        ).fetchall()
        for thread in threads:
            chains[thread["id"]] = self._chain(thread["id"], thread["tip_message_hash"])
        _refuse_fork_cycles({thread["id"]: thread["forked_from"] for thread in threads})
        for thread in threads:
            seen.add(thread["id"])
            chain = chains[thread["id"]]
            if not chain:
                self.history.notes.append(f"llm thread {thread['id']}: no messages")
                continue
            record, kept = self._record(thread, chain)
            origin = thread["forked_from"]
            if origin in chains and record["messages"]:
                shared = set(chains[origin])
                at = sum(1 for hash_ in kept if hash_ in shared) - 1
                record["forked_from"] = {"source": SOURCE_PREFIX + origin, "at": at}
            self.history.threads.append(record)

    def _chain(self, thread_id: str, tip: str | None) -> list[str]:
        """The thread's messages from the first to its tip, each its parent's child; a parent
        that is missing, or a chain that leads back into itself, is a damaged database."""
        chain: list[str] = []
        seen: set[str] = set()
        while tip is not None:
            if tip in seen:
                raise _damaged(f"llm thread {thread_id}: its messages' parents lead back to message {tip} (a cycle)")
            if tip not in self.parents:
                named_by = f", the parent of message {chain[-1]}," if chain else ", its last message,"
                raise _damaged(f"llm thread {thread_id}: message {tip}{named_by} is not in the database")
            seen.add(tip)
            chain.append(tip)
            tip = self.parents[tip]
        chain.reverse()
        return chain

    def _record(self, thread: sqlite3.Row, chain: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The thread's items, and the message hash each came from."""
        name = f"llm thread {thread['id']}"
        system = None
        messages: list[dict] = []
        kept: list[str] = []
        left_out: Counter[str] = Counter()
        waiting: dict[str, int] = {}
        for hash_ in chain:
            role = self.roles[hash_]
            if role == "system":
                text = self._text(hash_, left_out)
                if system is None and not messages:
                    system = text
                elif text != system:
                    left_out["a system prompt changed part-way (memchat keeps the first)"] += 1
                continue
            if role not in ("user", "assistant", "tool"):
                left_out[f"{role} messages"] += 1
                continue
            items = self._items(hash_, role, left_out)
            if not items:
                left_out[f"{role} messages with nothing memchat keeps"] += 1
                continue
            for item in items:
                if item.get("kind") == "function_call_output":
                    if waiting.pop(item["call_id"], None) is None:
                        left_out["tool results with no tool call before them"] += 1
                        continue
                elif waiting and item.get("kind") != "function_call":
                    for index in sorted(waiting.values(), reverse=True):
                        del messages[index], kept[index]
                        left_out["tool calls with no result"] += 1
                    waiting.clear()
                if item.get("kind") == "function_call":
                    waiting[item["call_id"]] = len(messages)
                messages.append(item)
                kept.append(hash_)
        for what, count in sorted(left_out.items()):
            self.history.notes.append(f"{name}: {count} {what} left out")
        record = _thread(SOURCE_PREFIX + thread["id"], thread["name"], system, messages)
        referenced = {part["blob"] for message in messages for part in message.get("parts") or () if "blob" in part}
        if referenced:
            record["blobs"] = {sha: self.blobs[sha] for sha in sorted(referenced)}
        return record, kept

    def _items(self, hash_: str, role: str, left_out: Counter[str]) -> list[dict[str, Any]]:
        """A message's items: a user's message (its text and attachments); an assistant's
        reasoning, message and tool calls, in that order; a tool message's outputs."""
        texts: list[str] = []
        parts: list[dict] = []
        attached = False
        reasoning: list[str] = []
        calls: list[dict] = []
        outputs: list[dict] = []
        for part in self.parts.get(hash_, []):
            kind = part["type"]
            if kind == "text":
                text = self._part_text(hash_, part)
                texts.append(text)
                parts.append({"type": "text", "text": text})
            elif kind == "reasoning":
                text = self._part_text(hash_, part)
                if text:
                    reasoning.append(text)
            elif kind == "attachment":
                data = _payload(hash_, part["payload"])
                found = self._attachment((data.get("attachment") or {}).get("id"), left_out)
                if found is not None:
                    parts.append(found)
                    attached = True
            elif kind == "tool_call":
                data = _payload(hash_, part["payload"])
                if data.get("server_executed"):
                    left_out["tool calls the provider ran itself"] += 1
                    continue
                name = str(part["tool_name"] or data.get("name") or "tool")
                arguments = json.dumps(data.get("arguments") or {}, ensure_ascii=False)
                calls.append(
                    {
                        "role": "assistant",
                        "kind": "function_call",
                        "content": f"{name}({arguments})",
                        "call_id": str(data.get("tool_call_id") or f"call_{hash_[-24:]}_{part['position']}"),
                        "name": name,
                        "arguments": arguments,
                    }
                )
            elif kind == "tool_result":
                data = _payload(hash_, part["payload"])
                if data.get("server_executed"):
                    continue
                outputs.append(self._output(hash_, part, data, left_out))
            else:
                left_out[f"{str(kind).replace('_', ' ')} parts"] += 1
        text = "".join(texts)
        items: list[dict[str, Any]] = []
        if reasoning and role == "assistant":
            summary = ["\n\n".join(reasoning)]
            items.append(
                {
                    "role": "assistant",
                    "kind": "reasoning",
                    "content": summary[0],
                    "provider_data": {
                        "family": None,
                        "encrypted_content": None,
                        "summary": summary,
                        "content": [],
                        "thinking_blocks": [],
                    },
                }
            )
        if role in ("user", "assistant") and (text or attached):
            message: dict[str, Any] = {"role": role, "content": text}
            if attached:
                message["parts"] = parts
            if role == "assistant":
                message = {**_reply(text, self.replies.get(hash_)), **message}
            else:
                asked = _iso(_moment((self.asked.get(hash_) or {}).get("datetime_utc")))
                if asked:
                    message["created_at"] = asked
            items.append(message)
        if role == "assistant":
            items.extend(calls)
        elif calls:
            left_out[f"tool calls in {role} messages"] += len(calls)
        items.extend(outputs)
        return items

    def _output(self, hash_: str, part: sqlite3.Row, data: dict, left_out: Counter[str]) -> dict[str, Any]:
        text = str(data.get("output") or "")
        if data.get("exception"):
            text = "\n".join(piece for piece in (text, f"error: {data['exception']}") if piece)
        output: dict[str, Any] = {
            "role": "tool",
            "kind": "function_call_output",
            "content": text,
            "call_id": str(data.get("tool_call_id") or ""),
        }
        attachments = [self._attachment(ref.get("id"), left_out) for ref in data.get("attachments") or ()]
        attachments = [found for found in attachments if found is not None]
        if attachments:
            output["parts"] = ([{"type": "text", "text": text}] if text else []) + attachments
        return output

    def _attachment(self, attachment_id: Any, left_out: Counter[str]) -> dict | None:
        """An attachment as an image or file part, its bytes from llm's table or its file."""
        row = None
        if self.has_attachments and isinstance(attachment_id, str):
            cursor = self.database.cursor()
            cursor.row_factory = None
            row = cursor.execute(
                "SELECT type, path, url, content FROM attachments WHERE id = ?", [attachment_id]
            ).fetchone()
        if row is None:
            left_out["attachments not in the database"] += 1
            return None
        media_type, path, url, content = row
        media_type = str(media_type or "application/octet-stream")
        kind = "image" if media_type.startswith("image/") else "file"
        if isinstance(content, str):
            content = content.encode()
        if content is None and path:
            try:
                content = Path(path).read_bytes()
            except OSError:
                content = None
        if content is None:
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                return {"type": kind, "url": url, **({"detail": "auto"} if kind == "image" else {})}
            left_out["attachments whose file is gone"] += 1
            return None
        part: dict[str, Any] = {"type": kind, "media_type": media_type}
        if kind == "image":
            part["detail"] = "auto"
        else:
            part["filename"] = Path(path).name if path else f"attachment.{media_type.rpartition('/')[2] or 'bin'}"
        return blob_part(part, content, self.blobs)

    def _part_text(self, hash_: str, part: sqlite3.Row) -> str:
        text = part["text"] if part["text"] is not None else self._referenced(hash_, part["payload"])
        if not isinstance(text, str):
            raise _damaged(f"message {hash_}: a text part holds a {type(text).__name__}, not text")
        return text

    def _text(self, hash_: str, left_out: Counter[str]) -> str:
        pieces = []
        for part in self.parts.get(hash_, []):
            if part["type"] == "text":
                pieces.append(self._part_text(hash_, part))
            else:
                left_out[f"{str(part['type']).replace('_', ' ')} parts"] += 1
        return "".join(pieces)

    def _referenced(self, hash_: str, payload: str | None) -> Any:
        """A text part that borrows fragments (llm's `-f`): its literals and fragments in order."""
        try:
            data = json.loads(payload) if payload else {}
            if "text" in data:
                return data["text"]
            return "".join(
                piece["literal"] if "literal" in piece else self.fragments.get(piece.get("fragment"), "")
                for piece in data.get("text_ref") or []
            )
        except (ValueError, RecursionError, TypeError, AttributeError):
            raise _damaged(f"message {hash_}: a text part's payload is not what llm writes") from None


def _payload(hash_: str, payload: str | None) -> dict[str, Any]:
    try:
        data = json.loads(payload) if payload else {}
    except (ValueError, RecursionError):
        raise _damaged(f"message {hash_}: a part's payload is not what llm writes") from None
    if not isinstance(data, dict):
        raise _damaged(f"message {hash_}: a part's payload is not what llm writes")
    return data


def _damaged(what: str) -> InvalidInput:
    return InvalidInput(f"import: the llm logs database is damaged: {what}; nothing was imported")


def _refuse_fork_cycles(origins: dict[str, str | None]) -> None:
    """Each thread's `forked_from`, followed back, must end: a thread forked from itself (or
    from one forked from it) names no origin memchat could link."""
    for thread_id in origins:
        seen, origin = {thread_id}, origins[thread_id]
        while origin in origins:
            if origin in seen:
                raise _damaged(
                    f"llm thread {thread_id} is forked from itself"
                    if origin == thread_id
                    else f"llm thread {thread_id} is forked from a thread that leads back to llm thread {origin}"
                )
            seen.add(origin)
            origin = origins[origin]


def _read_responses(database: sqlite3.Connection, tables: set[str], history: SourceHistory, seen: set[str]) -> None:
    """llm's older layout: one `responses` row an exchange, grouped by `conversations`; a
    conversation the message store holds too (newer llm keeps its id) is read from there."""
    columns = {row[1] for row in database.execute("PRAGMA table_info(responses)")}
    wanted = [
        c
        for c in (
            "id",
            "model",
            "resolved_model",
            "prompt",
            "system",
            "response",
            "conversation_id",
            "duration_ms",
            "datetime_utc",
            "input_tokens",
            "output_tokens",
        )
        if c in columns
    ]
    fragments = _legacy_fragments(database, tables)
    names = dict(database.execute("SELECT id, name FROM conversations").fetchall())
    exchanges: dict[str, list[dict]] = {}
    for row in database.execute(f"SELECT {', '.join(wanted)} FROM responses ORDER BY datetime_utc, id"):
        row = dict(row)
        conversation = row.get("conversation_id") or row["id"]
        if conversation not in seen:
            exchanges.setdefault(conversation, []).append(row)
    for conversation, rows in exchanges.items():
        name = f"llm conversation {conversation}"
        system = None
        messages: list[dict] = []
        left_out: Counter[str] = Counter()
        for row in rows:
            asked = fragments.get(("prompt", row["id"]), []) + ([row["prompt"]] if row.get("prompt") else [])
            said_system = "\n".join(
                fragments.get(("system", row["id"]), []) + ([row["system"]] if row.get("system") else [])
            )
            if said_system:
                if system is None and not messages:
                    system = said_system
                elif said_system != system:
                    left_out["a system prompt changed part-way (memchat keeps the first)"] += 1
            prompt = "\n".join(asked)
            if not prompt or not row.get("response"):
                left_out["exchanges with no prompt or no response text"] += 1
                continue
            asked = _iso(_moment(row.get("datetime_utc")))
            messages.append({"role": "user", "content": prompt, **({"created_at": asked} if asked else {})})
            messages.append(_reply(row["response"], row))
        for what, count in sorted(left_out.items()):
            history.notes.append(f"{name}: {count} {what} left out")
        if not messages:
            history.notes.append(f"{name}: no exchange with text")
            continue
        history.threads.append(_thread(SOURCE_PREFIX + conversation, names.get(conversation), system, messages))


def _legacy_fragments(database: sqlite3.Connection, tables: set[str]) -> dict[tuple[str, str], list[str]]:
    """The fragments (`llm -f`) each response's prompt and system prompt were built from, in order."""
    found: dict[tuple[str, str], list[str]] = {}
    for kind in ("prompt", "system"):
        table = f"{kind}_fragments"
        if table not in tables or "fragments" not in tables:
            continue
        rows = database.execute(
            f"SELECT x.response_id, f.content FROM {table} x JOIN fragments f ON f.id = x.fragment_id "
            'ORDER BY x.response_id, x."order"'
        )
        for response_id, content in rows:
            found.setdefault((kind, response_id), []).append(content)
    return found
