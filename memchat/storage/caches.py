"""Everything a process remembers between a store's calls, owned in one place.

Each cache is a hint or an exact copy that a later read checks, never the record itself: losing
any of them costs reads, never correctness. A store makes one `StoreCaches`; its tenant views
(`StoreCore.for_tenant`) share it.

- `recent` (`RecentHistories`): each thread's newest completed messages with their token counts
  and the text a turn's window read, per tokenizer, so that a warm process's turn reads only what
  changed. A copy is exact for one history version and dropped when the thread's version moves
  past it (unless a turn's own commit carries it forward); the least recently used threads' copies
  go first past `recent.MAX_THREADS` threads or `recent.MAX_CHARACTERS` of text.
- `unforked` (`UnforkedThreads`): threads known to inherit nothing (no fork, so they never will),
  whose lineage then costs no read. Forgotten all at once past `UNFORKED_KEPT` threads.
- `pages_read` (`PagesRead`): per thread, how many history messages its last context read, which
  sizes the next turn's first page (`memchat.prompt.first_page`). The least recently remembered
  thread goes first past `PAGES_REMEMBERED` threads.

Two smaller caches live with what they cache, as neither holds data: a snapshot's session keeps
the lineages it read (`session.info["lineages"]`, gone with the snapshot), and the dialect-specific
insert statements are built once per dialect (`functools.cache` in `statements` and `leases`).
"""

from __future__ import annotations

from memchat.storage.recent import RecentHistories

UNFORKED_KEPT = 10_000
"""Threads a process remembers inherit nothing (a thread that inherits nothing never will)."""
PAGES_REMEMBERED = 10_000
"""Threads whose last context's read a process remembers."""


class UnforkedThreads:
    """Threads that inherit nothing and never will (they were made, not forked)."""

    def __init__(self) -> None:
        self._threads: dict[str, None] = {}

    def __contains__(self, thread_id: str) -> bool:
        return thread_id in self._threads

    def add(self, thread_id: str) -> None:
        if len(self._threads) >= UNFORKED_KEPT:
            self._threads.clear()
        self._threads[thread_id] = None


class PagesRead:
    """Per thread, how many history messages its last context read in this process."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def get(self, thread_id: str) -> int | None:
        return self._counts.get(thread_id)

    def remember(self, thread_id: str, count: int) -> None:
        self._counts.pop(thread_id, None)
        self._counts[thread_id] = count
        if len(self._counts) > PAGES_REMEMBERED:
            del self._counts[next(iter(self._counts))]


class StoreCaches:
    """The caches of one store (see the module's docstring for what each holds and when it goes)."""

    def __init__(self) -> None:
        self.recent = RecentHistories()
        self.unforked = UnforkedThreads()
        self.pages_read = PagesRead()
