"""A ChatGPT data export (Settings → Data controls → Export) read as memchat threads.

The export's `conversations.json` (newer exports split it into `conversations-000.json`,
`-001.json`, ...) is an array of conversations; each is a tree of nodes (`mapping`: id →
{message, parent, children}) because every edited question and regenerated answer starts a new
branch. The branch that ends at the conversation's `current_node` (what ChatGPT shows) becomes
the thread; every other branch becomes a fork of the thread it shares the most with, at the
message where they split, so nothing in the export is dropped. A tool call (an assistant message to a `recipient` such as
`python`) becomes a function call, with the tool messages that answer it as its output (its call
id made from the node's); images (`image_asset_pointer` parts) are read from the files of the
export that carry their id, and one line names those the export lacks. What memchat cannot replay
(a tool result with no call before it, a call nothing answered, audio and other parts, reasoning
summaries, hidden context) is left out and reported; the custom instructions ChatGPT sent, if any,
become the thread's system prompt.
"""

from __future__ import annotations

import json
import mimetypes
import re
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memchat.errors import InvalidInput
from memchat.items import IMAGE_SIGNATURES
from memchat.transfer import SourceHistory, blob_part, check_size

SOURCE_PREFIX = "chatgpt:"
_CHUNK = 2**20
_SPLIT_FILE = re.compile(r"^conversations(-\d+)?\.json$")
_REASONING = {"thoughts", "reasoning_recap"}
_TOOL_OUTPUT = {"execution_output", "tether_browsing_display", "tether_quote", "system_error", "code"}


_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


def read(path: str | Path) -> SourceHistory:
    """The export as downloaded (.zip), unpacked (its folder), or one of its conversation files
    (whose folder holds the export's images)."""
    history = SourceHistory([], [])
    assets = _Assets(Path(path))
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
            _Conversation(conversation, index, history, assets).read()
    return history


class _Assets:
    """The files of the export (its images), found by the file id an asset pointer names: the
    export writes each as `<id>-<name>` or `<id>.<ext>`, in any folder."""

    def __init__(self, path: Path):
        self.path = path
        self.read_bytes = 0
        try:
            if path.is_dir() or not zipfile.is_zipfile(path):
                folder = path if path.is_dir() else path.parent
                self.names = {p.name: p for p in folder.rglob("*") if p.is_file()}
                self.archive = None
            else:
                self.archive = path
                with zipfile.ZipFile(path) as archive:
                    self.names = {Path(n).name: n for n in archive.namelist() if not n.endswith("/")}
        except OSError:
            self.names, self.archive = {}, None

    def find(self, pointer: str) -> tuple[str, bytes] | None:
        """The file's name and bytes, or None when the export does not hold it."""
        file_id = pointer.rpartition("://")[2]
        if not file_id:
            return None
        name = next(
            (name for name in sorted(self.names) if name == file_id or name.startswith((f"{file_id}-", f"{file_id}."))),
            None,
        )
        if name is None:
            return None
        location = self.names[name]
        try:
            if self.archive is None:
                data = Path(location).read_bytes()
            else:
                with zipfile.ZipFile(self.archive) as archive:
                    data = archive.read(location)
        except (OSError, zipfile.BadZipFile, KeyError):
            return None
        self.read_bytes += len(data)
        check_size(self.read_bytes)
        return name, data


def _media_type(name: str, data: bytes) -> str:
    for signature, media_type in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


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
    def __init__(self, data: dict[str, Any], index: int, history: SourceHistory, assets: _Assets):
        self.data = data
        self.assets = assets
        self.blobs: dict[str, dict[str, str]] = {}
        self.missing: list[str] = []
        """The file ids of images the export does not hold, each once."""
        self.items: dict[str, tuple[str, dict] | None] = {}
        """What each node said, read once: a message, a tool call or a tool result."""
        self.nodes: dict[str, Any] = data["mapping"]
        self.id = str(data.get("conversation_id") or data.get("id") or f"#{index + 1}")
        self.title = str(data.get("title") or "").strip() or "ChatGPT conversation"
        self.history = history
        self.left_out: Counter[str] = Counter()
        self.system: str | None = None
        self.read_nodes: set[tuple[str, str]] = set()
        """What a node lost, counted already: a node that branches share is reported once."""

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
        if self.missing:
            self.history.notes.append(
                f"ChatGPT conversation {self.id}: {len(self.missing)} image{'s' if len(self.missing) > 1 else ''} "
                f"not in the export ({', '.join(self.missing)}); the messages are kept without them"
            )

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
        """The path's items memchat keeps, each with the node it came from: a tool call is kept
        with the tool results that follow it as its output (one output, their texts and images
        joined), and left out when none does."""
        kept: list[tuple[str, dict]] = []
        call: tuple[str, dict] | None = None
        output: dict | None = None
        for node in path:
            message = self.nodes[node].get("message")
            if not isinstance(message, dict):
                continue
            if node not in self.items:
                self.items[node] = self._item(node, message)
            said = self.items[node]
            if said is None:
                continue
            kind, item = said
            if kind == "result":
                if output is not None:
                    _join(output, item)
                elif call is not None:
                    kept.append(call)
                    output = {**item, "role": "tool", "kind": "function_call_output", "call_id": call[1]["call_id"]}
                    kept.append((node, output))
                    call = None
                else:
                    self._count(node, "tool results with no tool call before them")
                continue
            if call is not None:
                self._count(call[0], "tool calls with no result")
            call, output = None, None
            if kind == "call":
                call = (node, item)
            else:
                kept.append((node, item))
        if call is not None:
            self._count(call[0], "tool calls with no result")
        return kept

    def _count(self, node: str, what: str) -> None:
        """Counts what a node lost, once however many branches hold it."""
        if (node, what) not in self.read_nodes:
            self.read_nodes.add((node, what))
            self.left_out[what] += 1

    def _item(self, node: str, message: dict[str, Any]) -> tuple[str, dict] | None:
        left_out = self.left_out
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
        if role == "tool":
            return self._result(content, kind)
        text, parts = self._content(content, kind, left_out)
        if role == "system":
            if text.strip() and self.system is None:
                self.system = text
            elif text.strip() and text != self.system:
                left_out["system messages"] += 1
            return None
        if role not in ("user", "assistant"):
            left_out[f"{role or 'unattributed'} messages"] += 1
            return None
        recipient = message.get("recipient")
        if role == "assistant" and recipient not in (None, "all"):
            return self._call(node, str(recipient), content, kind, text)
        if kind in _REASONING:
            left_out["reasoning summaries"] += 1
            return None
        if metadata.get("is_visually_hidden_from_conversation") and not text.strip() and not parts:
            return None
        if not text.strip() and not parts:
            left_out[f"{role} messages with no text"] += 1
            return None
        said: dict[str, Any] = {"role": role, "content": text}
        if parts:
            said["parts"] = parts
        moment = _moment(message.get("create_time"))
        if moment:
            said["created_at"] = moment
        if role == "assistant" and isinstance(metadata.get("model_slug"), str):
            said["model"] = metadata["model_slug"]
        return "message", said

    def _call(self, node: str, recipient: str, content: Any, kind: str | None, text: str) -> tuple[str, dict]:
        """An assistant message to a tool, as a function call: code as `{"code": ...}`, text
        that is JSON as it is, other text as `{"input": ...}`."""
        if kind == "code" and isinstance(content, dict):
            arguments = json.dumps({"code": str(content.get("text") or "")}, ensure_ascii=False)
        else:
            try:
                json.loads(text)
                arguments = text
            except ValueError:
                arguments = json.dumps({"input": text}, ensure_ascii=False)
        name = _TOOL_NAME.sub("_", recipient)[:64]
        call_id = "call_" + re.sub(r"[^A-Za-z0-9]", "", node)[:59]
        return "call", {
            "role": "assistant",
            "kind": "function_call",
            "content": f"{name}({arguments})",
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }

    def _result(self, content: Any, kind: str | None) -> tuple[str, dict] | None:
        if not isinstance(content, dict):
            return None
        if kind == "execution_output":
            text, parts = str(content.get("text") or ""), []
        elif kind == "tether_browsing_display":
            text, parts = str(content.get("result") or content.get("summary") or ""), []
        elif kind == "tether_quote":
            pieces = (content.get(key) for key in ("title", "url", "text"))
            text, parts = "\n".join(str(piece) for piece in pieces if piece), []
        elif kind == "system_error":
            text, parts = f"{content.get('name') or 'error'}: {content.get('text') or ''}", []
        else:
            text, parts = self._content(content, kind, self.left_out)
        return "result", {"content": text, **({"parts": parts} if parts else {})}

    def _content(self, content: Any, kind: str | None, left_out: Counter[str]) -> tuple[str, list[dict]]:
        """A message's text, and its parts when it holds images (its text parts among them, in order)."""
        if kind in _TOOL_OUTPUT or kind in _REASONING or not isinstance(content, dict):
            return "", []
        if kind not in ("text", "multimodal_text"):
            left_out[f"{kind} messages"] += 1
            return "", []
        pieces: list[str] = []
        parts: list[dict] = []
        images = 0
        for part in content.get("parts") or []:
            if isinstance(part, str):
                piece = part
            elif isinstance(part, dict) and part.get("content_type") == "audio_transcription":
                piece = str(part.get("text") or "")
            elif isinstance(part, dict) and part.get("content_type") == "image_asset_pointer":
                image = self._image(str(part.get("asset_pointer") or ""))
                if image is not None:
                    parts.append(image)
                    images += 1
                continue
            else:
                left_out[f"{part.get('content_type', 'unknown') if isinstance(part, dict) else 'unknown'} parts"] += 1
                continue
            if piece:
                pieces.append(piece)
                parts.append({"type": "text", "text": piece})
        return "\n".join(pieces), parts if images else []

    def _image(self, pointer: str) -> dict | None:
        found = self.assets.find(pointer)
        if found is None:
            file_id = pointer.rpartition("://")[2] or pointer or "an image with no id"
            if file_id not in self.missing:
                self.missing.append(file_id)
            return None
        name, data = found
        part = {"type": "image", "media_type": _media_type(name, data), "detail": "auto"}
        return blob_part(part, data, self.blobs)

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
        referenced = {part["blob"] for message in said for part in message.get("parts") or () if "blob" in part}
        if referenced:
            thread["blobs"] = {sha: self.blobs[sha] for sha in sorted(referenced)}
        self.history.threads.append(thread)


def _join(output: dict, more: dict) -> None:
    """A second tool result for the same call, added to its output."""
    if "parts" in output or "parts" in more:
        output["parts"] = _parts_of(output) + _parts_of(more)
    output["content"] = "\n\n".join(text for text in (output["content"], more["content"]) if text)


def _parts_of(said: dict) -> list[dict]:
    if "parts" in said:
        return said["parts"]
    return [{"type": "text", "text": said["content"]}] if said["content"] else []


def _shared(one: list[str], other: list[str]) -> int:
    """How many nodes two root-to-leaf paths share."""
    count = 0
    for a, b in zip(one, other):
        if a != b:
            break
        count += 1
    return count
