"""A ChatGPT data export (Settings → Data controls → Export) read as memchat threads.

The export's `conversations.json` (newer exports split it into `conversations-000.json`,
`-001.json`, ...) is an array of conversations; each is a tree of nodes (`mapping`: id →
{message, parent, children}) because every edited question and regenerated answer starts a new
branch. The branch that ends at the conversation's `current_node` (what ChatGPT shows) becomes
the thread; every other branch becomes a fork of the thread it shares the most with, at the
message where they split, so nothing in the export is dropped. What memchat cannot replay (tool
calls and their results, browsing, images and other non-text parts, reasoning summaries, hidden
context) is left out and reported; the custom instructions ChatGPT sent, if any, become the
thread's system prompt.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memchat.errors import InvalidInput
from memchat.transfer import SourceHistory, check_size

SOURCE_PREFIX = "chatgpt:"
_CHUNK = 2**20
_SPLIT_FILE = re.compile(r"^conversations(-\d+)?\.json$")
_REASONING = {"thoughts", "reasoning_recap"}
_TOOL_OUTPUT = {"execution_output", "tether_browsing_display", "tether_quote", "system_error", "code"}


def read(path: str | Path) -> SourceHistory:
    """The export as downloaded (.zip), unpacked (its folder), or one of its conversation files."""
    history = SourceHistory([], [])
    for name, raw in _conversation_files(Path(path)):
        try:
            conversations = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"import: {name} is not JSON ({exc}); nothing was imported") from None
        except RecursionError:
            raise InvalidInput(
                f"import: {name} is nested too deeply to be a ChatGPT export; nothing was imported"
            ) from None
        if not isinstance(conversations, list):
            raise InvalidInput(
                f"import: {name} is not a ChatGPT export (an array of conversations); nothing was imported"
            )
        for index, conversation in enumerate(conversations):
            if not isinstance(conversation, dict) or not isinstance(conversation.get("mapping"), dict):
                raise InvalidInput(f"import: {name}: conversation {index + 1} has no `mapping`; nothing was imported")
            _Conversation(conversation, index, history).read()
    return history


def _conversation_files(path: Path) -> list[tuple[str, bytes]]:
    try:
        if path.is_dir():
            names = sorted(p for p in path.iterdir() if _SPLIT_FILE.match(p.name))
            if not names:
                raise InvalidInput(f"import: {path} holds no conversations.json (is it a ChatGPT export?)")
            check_size(sum(p.stat().st_size for p in names))
            return [(p.name, p.read_bytes()) for p in names]
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = sorted(n for n in archive.namelist() if _SPLIT_FILE.match(Path(n).name))
                if not names:
                    raise InvalidInput(f"import: {path} holds no conversations.json (is it a ChatGPT export?)")
                check_size(sum(archive.getinfo(name).file_size for name in names))
                return _inflated(archive, names)
        check_size(path.stat().st_size)
        return [(path.name, path.read_bytes())]
    except OSError as exc:
        raise InvalidInput(f"import: cannot read {path}: {exc.strerror}") from None
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"import: cannot read {path}: {exc}") from None


def _inflated(archive: zipfile.ZipFile, names: list[str]) -> list[tuple[str, bytes]]:
    """The members unpacked a chunk at a time, counting what actually comes out: a zip's
    headers may understate what a member inflates to, and one read of it whole would hold all
    of that in memory before anything could count it."""
    files, total = [], 0
    for name in names:
        pieces = []
        with archive.open(name) as member:
            while chunk := member.read(_CHUNK):
                total += len(chunk)
                check_size(total)
                pieces.append(chunk)
        files.append((name, b"".join(pieces)))
    return files


def _moment(seconds: Any) -> str | None:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds < 32503680000:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


class _Conversation:
    def __init__(self, data: dict[str, Any], index: int, history: SourceHistory):
        self.data = data
        self.nodes: dict[str, Any] = data["mapping"]
        self.id = str(data.get("conversation_id") or data.get("id") or f"#{index + 1}")
        self.title = str(data.get("title") or "").strip() or "ChatGPT conversation"
        self.history = history
        self.left_out: Counter[str] = Counter()
        self.system: str | None = None
        self.read_nodes: set[str] = set()
        """Nodes read already: a node that branches share is reported once, not once a branch."""

    def read(self) -> None:
        paths = self._paths()
        if paths is None:
            return
        main, branches = paths
        source = SOURCE_PREFIX + self.id
        threads = [(main, source)]
        self._emit(source, self.title, self._messages(main), None)
        for number, branch in enumerate(branches, start=1):
            messages = self._messages(branch)
            origin_path, origin_source = max(threads, key=lambda thread: _shared(thread[0], branch))
            shared = set(origin_path[: _shared(origin_path, branch)])
            at = sum(1 for node, _ in messages if node in shared) - 1
            branch_source = f"{source}/{branch[-1]}"
            threads.append((branch, branch_source))
            if at == len(messages) - 1:
                self.history.notes.append(
                    f"ChatGPT conversation {self.id}: branch {number} holds nothing memchat keeps beyond what it shares; "
                    "not imported"
                )
                continue
            self._emit(branch_source, f"{self.title} (branch {number})", messages, {"source": origin_source, "at": at})
        for what, count in sorted(self.left_out.items()):
            self.history.notes.append(f"ChatGPT conversation {self.id}: {count} {what} left out")

    def _paths(self) -> tuple[list[str], list[list[str]]] | None:
        """The path from the root to the current node, and to every other leaf."""
        current = self.data.get("current_node")
        leaves = [node for node, entry in self.nodes.items() if isinstance(entry, dict) and not entry.get("children")]
        if current not in self.nodes:
            current = max(leaves, key=lambda node: self._time(node), default=None)
        if current is None:
            self.history.notes.append(f"ChatGPT conversation {self.id}: no message with text; not imported")
            return None
        main = self._path(current)
        if main is None:
            return None
        on_main = set(main)
        branches = []
        for leaf in sorted((leaf for leaf in leaves if leaf not in on_main), key=self._time):
            path = self._path(leaf)
            if path is None:
                return None
            branches.append(path)
        return main, branches

    def _path(self, node: str) -> list[str] | None:
        path: list[str] = []
        seen: set[str] = set()
        while node is not None:
            entry = self.nodes.get(node)
            if node in seen or not isinstance(entry, dict):
                self.history.notes.append(
                    f"ChatGPT conversation {self.id}: its message tree is broken at node {node}; not imported"
                )
                return None
            seen.add(node)
            path.append(node)
            node = entry.get("parent")
        path.reverse()
        return path

    def _time(self, node: str) -> float:
        message = (self.nodes.get(node) or {}).get("message") or {}
        moment = message.get("create_time")
        return moment if isinstance(moment, (int, float)) else 0.0

    def _messages(self, path: list[str]) -> list[tuple[str, dict]]:
        """The path's messages memchat keeps, each with the node it came from."""
        kept = []
        for node in path:
            message = self.nodes[node].get("message")
            if not isinstance(message, dict):
                continue
            said = self._message(message, counting=node not in self.read_nodes)
            self.read_nodes.add(node)
            if said is not None:
                kept.append((node, said))
        return kept

    def _message(self, message: dict[str, Any], *, counting: bool) -> dict[str, Any] | None:
        left_out = self.left_out if counting else Counter()
        role = (message.get("author") or {}).get("role")
        content = message.get("content") or {}
        kind = content.get("content_type") if isinstance(content, dict) else None
        metadata = message.get("metadata") or {}
        if kind == "user_editable_context":
            instructions = "\n\n".join(
                str(content[key]).strip() for key in ("user_profile", "user_instructions") if content.get(key)
            )
            if instructions and self.system is None:
                self.system = instructions
            return None
        text = self._text(content, kind, left_out)
        if role == "system":
            if text.strip() and self.system is None:
                self.system = text
            elif text.strip() and text != self.system:
                left_out["system messages"] += 1
            return None
        if role not in ("user", "assistant"):
            left_out[f"{role or 'unattributed'} messages (tool results)"] += 1
            return None
        if role == "assistant" and message.get("recipient") not in (None, "all"):
            left_out["tool calls"] += 1
            return None
        if kind in _REASONING:
            left_out["reasoning summaries"] += 1
            return None
        if metadata.get("is_visually_hidden_from_conversation") and not text.strip():
            return None
        if not text.strip():
            left_out[f"{role} messages with no text"] += 1
            return None
        said: dict[str, Any] = {"role": role, "content": text}
        moment = _moment(message.get("create_time"))
        if moment:
            said["created_at"] = moment
        if role == "assistant" and isinstance(metadata.get("model_slug"), str):
            said["model"] = metadata["model_slug"]
        return said

    @staticmethod
    def _text(content: Any, kind: str | None, left_out: Counter[str]) -> str:
        if kind in _TOOL_OUTPUT or kind in _REASONING or not isinstance(content, dict):
            return ""
        if kind not in ("text", "multimodal_text"):
            left_out[f"{kind} messages"] += 1
            return ""
        pieces = []
        for part in content.get("parts") or []:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and part.get("content_type") == "audio_transcription":
                pieces.append(str(part.get("text") or ""))
            else:
                left_out[f"{part.get('content_type', 'unknown') if isinstance(part, dict) else 'unknown'} parts"] += 1
        return "\n".join(piece for piece in pieces if piece)

    def _emit(self, source: str, title: str, messages: list[tuple[str, dict]], origin: dict | None) -> None:
        if not messages:  # a branch always holds more than it shares (see `read`)
            self.history.notes.append(f"ChatGPT conversation {self.id}: no message with text; not imported")
            return
        said = [message for _, message in messages]
        thread: dict[str, Any] = {
            "source": source,
            "title": title[:500],
            "system": self.system,
            "created_at": _moment(self.data.get("create_time")) or said[0].get("created_at"),
            "updated_at": _moment(self.data.get("update_time")) or said[-1].get("created_at"),
            "messages": said,
        }
        if origin is not None:
            thread["forked_from"] = origin
        self.history.threads.append(thread)


def _shared(one: list[str], other: list[str]) -> int:
    """How many nodes two root-to-leaf paths share."""
    count = 0
    for a, b in zip(one, other):
        if a != b:
            break
        count += 1
    return count
