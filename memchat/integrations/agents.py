"""An OpenAI Agents SDK session kept in memchat: `MemchatSession` is the SDK's `Session` protocol
(sdk `memory/session.py`; docs/agent-items.md §3.4) over a `Memory`, so an agent run in this
process keeps its items in a memchat thread, without a server:

    from agents import Agent, Runner
    from memchat import Memory
    from memchat.integrations.agents import MemchatSession

    session = MemchatSession("user-42", Memory())
    await Runner.run(agent, "Weather in Paris?", session=session)

A session id names one thread (its `source` is `agents:<session id>`), made on first use; the
thread is an ordinary one, which `memchat show`, search, export and the server read like any
other. The SDK gets its items back exactly as it gave them: the columns of memchat's items
(`memchat.items`) hold each one's text, arguments, images and reasoning, and the rest of the
item as given (its ids, `status`, an output text's `annotations` and `logprobs`, a key memchat
has no column for) is kept with it, the payload left out (`provider_data["given"]`), so an item
reads back equal to the one added, keys in the same order.

Nothing here imports `agents`: the protocol is duck-typed, which is what the SDK asks of a
library's session (its `SessionABC` is for the SDK's own).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from memchat.api import Memory
from memchat.errors import InvalidInput, NotFound
from memchat.items import ENCRYPTED_CONTENT, INPUT_IMAGE_URL, from_responses_input, stored_parts, to_responses_item
from memchat.records import MessageCreate, MessagePublic, ThreadPublic
from memchat.schemas import MAX_SOURCE

SOURCE_PREFIX = "agents:"
GIVEN = "given"
"""The key of `provider_data` that keeps what an item held besides its payload."""
INCLUDE = frozenset({ENCRYPTED_CONTENT, INPUT_IMAGE_URL})
PAGE = 1000
"""Items read at a time (`Memory.message_page`'s largest page)."""
PART_PAYLOADS: dict[str, tuple[str, ...]] = {
    "input_text": ("text",),
    "output_text": ("text",),
    "refusal": ("refusal",),
    "input_image": ("image_url",),
    "input_file": ("file_data", "file_url"),
}
"""The keys of a content part whose values the item's columns hold (its text, or its bytes as a blob)."""


class MemchatSession:
    """The Agents SDK's `Session` over a memchat thread. `memory`: the Memory to keep the items
    in (default: a Memory on memchat's database, `MEMCHAT_DB`, which `close` closes);
    `session_settings`: the SDK's `SessionSettings` (its `limit` is how many of the newest items
    `get_items` gives when the runner asks for all); `thread_settings`: `Memory.new_thread`'s
    keywords (model, system, title, labels, ...) for the thread when it is made, not read later."""

    def __init__(
        self,
        session_id: str,
        memory: Memory | None = None,
        *,
        session_settings: Any = None,
        **thread_settings: Any,
    ):
        self.session_id = session_id
        self.session_settings = session_settings
        self.memory = memory if memory is not None else Memory()
        self._owns_memory = memory is None
        self._thread_settings = thread_settings
        self._thread_id: str | None = None

    @property
    def source(self) -> str:
        """The thread's `source`: the session id, or its SHA-256 when it is too long to be one."""
        source = SOURCE_PREFIX + self.session_id
        if len(source) > MAX_SOURCE:
            source = SOURCE_PREFIX + "sha256:" + hashlib.sha256(self.session_id.encode()).hexdigest()
        return source

    def thread(self) -> ThreadPublic:
        """The session's thread, made now if it has none yet (`memchat show <id>` shows it)."""
        thread = self.memory.sourced_thread(self.source, **self._thread_settings)
        self._thread_id = thread.id
        return thread

    def close(self) -> None:
        """Close the Memory the session opened itself (one given to it is the caller's)."""
        if self._owns_memory:
            self.memory.close()

    # ---- the Session protocol ----------------------------------------------------------------

    async def get_items(self, limit: int | None = None, *, wrapper: Any = None) -> list[dict]:
        """The newest `limit` items (None: the session settings' limit, else all), oldest first.
        `wrapper` is the run's context, which the SDK gives a session that accepts it: memchat
        keeps nothing of it."""
        if limit is None and self.session_settings is not None:
            limit = getattr(self.session_settings, "limit", None)
        return await asyncio.to_thread(self._on_thread, lambda thread: self._items(thread, limit))

    async def add_items(self, items: list[dict], *, wrapper: Any = None) -> None:
        """Store the items after the session's last, as one change: checked first (an output
        must answer a call, nothing but outputs may follow a call still waiting), so a refused
        list (InvalidInput, in OpenAI's words) stores nothing."""
        if not items:
            return
        records = _records(items)
        await asyncio.to_thread(self._on_thread, lambda thread: self.memory.add_items(thread, records))

    async def pop_item(self, *, wrapper: Any = None) -> dict | None:
        """Take the newest item out of the session and give it back (None: the session has none).
        The item is marked undone, as `memchat undo` marks a turn: shown, but read by nothing."""
        return await asyncio.to_thread(self._on_thread, self._pop)

    async def clear_session(self, *, wrapper: Any = None) -> None:
        """Delete the session's thread; the next use makes a new, empty one."""
        await asyncio.to_thread(self._clear)

    # ---- on a worker thread ------------------------------------------------------------------

    def _on_thread(self, action: Callable[[str], Any]) -> Any:
        """`action(thread id)`, made again on a new thread if the one known was deleted
        meanwhile (another session object on the same id cleared it)."""
        if self._thread_id is None:
            self.thread()
        try:
            return action(self._thread_id)
        except NotFound:
            self.thread()
            return action(self._thread_id)

    def _items(self, thread_id: str, limit: int | None) -> list[dict]:
        return self._given(self._newest(thread_id, limit))

    def _newest(self, thread_id: str, limit: int | None) -> list[MessagePublic]:
        """The newest `limit` complete items (None: all), oldest first, read a page at a time;
        undone ones, and a turn's unfinished ones, are no longer part of the conversation."""
        if limit is not None and limit <= 0:
            return []
        newest_first = limit is not None
        kept: list[MessagePublic] = []
        after = None
        while limit is None or len(kept) < limit:
            page, more = self.memory.message_page(thread_id, after=after, limit=PAGE, newest_first=newest_first)
            kept.extend(message for message in page if message.status == "complete")
            if not more or not page:
                break
            after = page[-1].position
        return kept[:limit][::-1] if newest_first else kept

    def _pop(self, thread_id: str) -> dict | None:
        newest = self._newest(thread_id, 1)
        if not newest:
            return None
        item = self._given(newest)[0]
        self.memory.undo_message(thread_id, newest[0].position)
        return item

    def _clear(self) -> None:
        if self._thread_id is None:
            self.thread()
        try:
            self.memory.delete(self._thread_id)
        except NotFound:
            pass
        self._thread_id = None

    def _given(self, messages: list[MessagePublic]) -> list[dict]:
        """The items as the SDK gave them, their images and files read from their blobs."""
        hashes = sorted({part["blob"] for message in messages for part in message.parts or () if "blob" in part})
        blobs = self.memory.blobs(hashes) if hashes else {}
        return [item_of(message, lambda sha: blobs[sha][1]) for message in messages]


# ---- items in and out --------------------------------------------------------------------------


def _records(items: list[dict]) -> list[MessageCreate]:
    """The records of the SDK's items, each keeping what it gave besides the payload, checked
    to read back equal to the item."""
    records = from_responses_input(items, field="items")
    return [_keeping(item, record, f"items[{index}]") for index, (item, record) in enumerate(zip(items, records))]


def _keeping(item: dict, record: MessageCreate, path: str) -> MessageCreate:
    """`record` with `provider_data["given"]`: the item with None in place of each value its
    columns give back exactly (`hollow`; a value they give back otherwise, as a file's bare
    base64 that memchat gives as a data URL, stays as given), or the whole item should the
    hollow one not read back equal to it."""
    try:
        given = json.dumps(item)
    except (TypeError, ValueError) as bad:
        raise InvalidInput(f"{path}: is not JSON ({bad})") from None
    stored, blobs = _as_stored(record)
    full = _full(stored, lambda sha: blobs[sha])
    hollow = copy.deepcopy(item)
    for container, key, where in _slots(hollow):
        if _value(where, stored, full) == container[key]:
            container[key] = None
    kept = {"hollow": hollow}
    if json.dumps(_filled(copy.deepcopy(hollow), stored, lambda sha: blobs[sha])) != given:
        kept = {"item": item}
    return record.model_copy(update={"provider_data": {**(record.provider_data or {}), GIVEN: kept}})


def _as_stored(record: MessageCreate) -> tuple[MessageCreate, dict[str, bytes]]:
    """The record as the store will keep it (its bytes as blobs, referred to by hash), and those
    bytes by hash, to read it back before it is stored."""
    if not record.parts:
        return record, {}
    parts, blobs = stored_parts(record.parts)
    return record.model_copy(update={"parts": parts}), blobs


def item_of(message: Any, blob: Callable[[str], bytes]) -> dict:
    """A stored item as the Responses input item the SDK sends: as it was given to the session,
    or, for an item memchat made (a turn's reply) or another face stored, in OpenAI's shape
    without an id memchat would have to make up."""
    given = (message.provider_data or {}).get(GIVEN)
    if given is not None and "item" in given:
        return copy.deepcopy(given["item"])
    if given is not None:
        return _filled(copy.deepcopy(given["hollow"]), message, blob)
    item = to_responses_item(message, blob, item_id=message.item_id or "", include=INCLUDE)
    if message.item_id is None:
        del item["id"]
    return item


def _full(message: Any, blob: Callable[[str], bytes]) -> dict:
    return to_responses_item(message, blob, item_id=message.item_id or "", include=INCLUDE)


def _slots(item: dict) -> Iterator[tuple[dict, str, tuple]]:
    """Where the item holds a value memchat's columns keep: (the dict holding it, its key, where
    the stored item gives it: `("text",)` its content, `("arguments",)` its arguments, else the
    path to it in the item `to_responses_item` makes)."""
    kind = item.get("type") or "message"
    if kind in ("message", "function_call_output"):
        key = "content" if kind == "message" else "output"
        value = item.get(key)
        if value is None or isinstance(value, str):
            yield item, key, ("text",)
        for index, part in enumerate(value if isinstance(value, list) else ()):
            for payload in PART_PAYLOADS.get(part.get("type"), ()) if isinstance(part, dict) else ():
                if payload in part:
                    yield part, payload, (key, index, payload)
    elif kind == "function_call":
        yield item, "arguments", ("arguments",)
    elif kind == "reasoning":
        for key in ("summary", "content"):
            for index, part in enumerate(item.get(key) or ()):
                yield part, "text", (key, index, "text")
        if "encrypted_content" in item:
            yield item, "encrypted_content", ("encrypted_content",)


def _value(where: tuple, message: Any, full: dict) -> Any:
    if where == ("text",):
        return message.content
    if where == ("arguments",):
        return message.arguments
    value: Any = full
    try:
        for step in where:
            value = value[step]
    except (KeyError, IndexError, TypeError):
        return None
    return value


def _filled(hollow: dict, message: Any, blob: Callable[[str], bytes]) -> dict:
    """The hollow item with the stored item's values where it holds None."""
    full = _full(message, blob)
    for container, key, where in list(_slots(hollow)):
        if container[key] is None:
            container[key] = _value(where, message, full)
    return hollow
