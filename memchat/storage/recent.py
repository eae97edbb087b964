"""The recent history of threads, kept in memory by a long-lived process (a warm `memchat serve`
worker) so that a turn reads only what changed since the last one instead of its whole window.

A copy is exact for one history version (`threads.history_version`, raised by every append and,
through a database trigger, by every status change): a turn reads that number by primary key,
and a copy made at another version is dropped. A turn's own commits, which hold the thread's
row while they write, carry the copy forward to the version they leave when they only touched
messages past it (`advance`); what they wrote is then read as a short tail (`through`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

MAX_THREADS = 2_000
"""Threads whose recent history one process keeps."""
MAX_CHARACTERS = 32_000_000
"""Message text all copies hold together; the least recently used copies go first."""
MIN_ROWS_KEPT = 256


@dataclass(frozen=True)
class HistoryRow:
    """A stored message without its content, for choosing what fits."""

    id: int
    position: int
    role: str
    tokens: int | None
    """Its content's token count by the requested tokenizer, None if not counted yet."""
    context_limit: int | None = None
    kind: str = "message"
    rich: bool = False
    """It has parts (images, files) besides its text."""


@dataclass(frozen=True)
class RecentHistory:
    """The newest completed messages of a thread at one history version."""

    version: int
    through: int
    """Every message up to this position is accounted for: the completed ones from the oldest row
    on are in `rows`; newer messages were not complete at `version` (-1: none yet)."""
    rows: tuple[HistoryRow, ...]
    """Completed messages, newest first, without a gap."""
    reaches_start: bool
    """`rows` hold every completed message of the thread up to `through`."""
    contents: Mapping[int, str] = field(default_factory=dict)
    """The text of rows read so far (a turn's window), by message id."""
    stale_tail: bool = False
    """A turn's commits added messages after `through`: read them before using the copy."""

    @cached_property
    def characters(self) -> int:
        return sum(len(text) for text in self.contents.values())

    def older_than(self, before: int | None, limit: int) -> list[HistoryRow]:
        if before is None:
            return list(self.rows[:limit])
        return [row for row in self.rows if row.position < before][:limit]

    def covers(self, before: int | None, limit: int) -> bool:
        """Whether the rows answer a page request without the database."""
        return self.reaches_start or len(self.older_than(before, limit)) >= limit

    def contents_from(self, position: int) -> dict[int, str] | None:
        """The text of every completed message from `position` on, or None if not all held (or
        messages were added since the copy was last brought up to date)."""
        if self.stale_tail:
            return None
        if not self.reaches_start and (not self.rows or self.rows[-1].position > position):
            return None
        wanted = [row.id for row in self.rows if row.position >= position]
        if any(message_id not in self.contents for message_id in wanted):
            return None
        return {message_id: self.contents[message_id] for message_id in wanted}


class RecentHistories:
    """The copies one Store keeps (per thread, one per tokenizer its turns use), shared by the
    threads of its process; the least recently used threads' copies go first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: OrderedDict[str, dict[str, RecentHistory]] = OrderedDict()
        self._characters = 0

    def get(self, thread_id: str, tokenizer: str, version: int) -> RecentHistory | None:
        with self._lock:
            copies = self._threads.get(thread_id)
            copy = copies.get(tokenizer) if copies else None
            if copy is None:
                return None
            if copy.version != version:
                self._drop(thread_id, tokenizer)
                return None
            self._threads.move_to_end(thread_id)
            return copy

    def put(self, thread_id: str, tokenizer: str, copy: RecentHistory, *, keep: int = MIN_ROWS_KEPT) -> None:
        """Keep `copy` (its `keep` newest rows at most, and never fewer than MIN_ROWS_KEPT)."""
        keep = max(keep, MIN_ROWS_KEPT)
        if len(copy.rows) > keep:
            rows = copy.rows[:keep]
            kept = {row.id for row in rows}
            copy = replace(
                copy, rows=rows, reaches_start=False, contents={i: t for i, t in copy.contents.items() if i in kept}
            )
        with self._lock:
            self._drop(thread_id, tokenizer)
            self._threads.setdefault(thread_id, {})[tokenizer] = copy
            self._threads.move_to_end(thread_id)
            self._characters += copy.characters
            self._shrink()

    def advance(self, thread_id: str, *, seen: int, now: int, changed_from: int) -> None:
        """A commit that held the thread's row moved its history from version `seen` to `now`,
        changing only messages at `changed_from` or later: copies at `seen` that account for
        no message there stay exact at `now` once they read what follows them; others go."""
        with self._lock:
            for tokenizer, copy in list(self._threads.get(thread_id, {}).items()):
                if copy.version == seen and copy.through < changed_from:
                    self._threads[thread_id][tokenizer] = replace(copy, version=now, stale_tail=True)
                else:
                    self._drop(thread_id, tokenizer)

    def read(self, thread_id: str, tokenizer: str, version: int, contents: Mapping[int, str]) -> None:
        """Message text read from the database at `version`, kept for the copy's rows."""
        with self._lock:
            copy = self._threads.get(thread_id, {}).get(tokenizer)
            if copy is None or copy.version != version:
                return
            held = {row.id: contents[row.id] for row in copy.rows if row.id in contents and row.id not in copy.contents}
            if held:
                self._threads[thread_id][tokenizer] = replace(copy, contents={**copy.contents, **held})
                self._characters += sum(len(text) for text in held.values())
                self._shrink()

    def counted(self, thread_id: str, tokenizer: str, counts: Mapping[int, int]) -> None:
        """Token counts made for rows that had none."""
        with self._lock:
            copy = self._threads.get(thread_id, {}).get(tokenizer)
            if copy is None:
                return
            rows = tuple(replace(row, tokens=counts[row.id]) if row.id in counts else row for row in copy.rows)
            self._threads[thread_id][tokenizer] = replace(copy, rows=rows)

    def _shrink(self) -> None:
        while self._threads and (len(self._threads) > MAX_THREADS or self._characters > MAX_CHARACTERS):
            oldest = next(iter(self._threads))
            for tokenizer in list(self._threads[oldest]):
                self._drop(oldest, tokenizer)

    def _drop(self, thread_id: str, tokenizer: str) -> None:
        copies = self._threads.get(thread_id)
        copy = copies.pop(tokenizer, None) if copies else None
        if copy is not None:
            self._characters -= copy.characters
        if copies is not None and not copies:
            del self._threads[thread_id]
