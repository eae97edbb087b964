"""The store: every read and write of threads and messages, and the only code that opens sessions.

Each public method is one transaction, so a failure part-way leaves nothing half-written.
Reads that a turn makes are bounded by what the turn needs, never by the length of a thread:
history is read newest first, a page at a time, over the (thread, position) index.

`Store` is the one object callers hold; its methods come from one module for each aggregate,
all built on `core.StoreCore` (engines, snapshots, transactions, the tenant view) and
`lineage.Lineage` (where a fork's history is stored, copy on write):
`threads`, `messages` (and summaries), `history` (a turn's read of it), `turns` (a turn's writes
and undo), `leases`, `search` (search, recall, vectors), `usage`, `keys` and `bulk` (import and
export). Statements several of them share are in `statements`; the process caches in `caches`.
Callers import `Store` and the store's own types (`ThreadRecord`, `Recallable`) from here; the records
and results its methods give are `memchat.records` and `memchat.results`.
"""

from __future__ import annotations

from memchat.storage.blobs import Blobs
from memchat.storage.bulk import Bulk, ThreadRecord
from memchat.storage.history import History
from memchat.storage.keys import Keys
from memchat.storage.leases import Leases
from memchat.storage.search import Recallable, Search
from memchat.storage.statements import LAST_POSSIBLE_POSITION
from memchat.storage.turns import TurnWrites
from memchat.storage.usage import Usage

__all__ = ["LAST_POSSIBLE_POSITION", "Recallable", "Store", "ThreadRecord"]


class Store(Bulk, TurnWrites, History, Search, Usage, Keys, Leases, Blobs):
    """A database's threads and messages (see the module's docstring for its parts)."""
