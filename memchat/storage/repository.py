"""The store: every read and write of threads and messages, and the only code that opens sessions.

Each public method is one transaction, so a failure part-way leaves nothing half-written.
Reads that a turn makes are bounded by what the turn needs, never by the length of a thread:
history is read newest first, a page at a time, over the (thread, position) index.
"""

from __future__ import annotations

import copy
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, Integer, String, bindparam, case, exists, func, insert, literal_column, text, update
from sqlalchemy import select as select_columns
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, delete, select

from memchat.errors import HistoryMoved, InvalidInput, LeaseLost, NotFound, StorageError
from memchat.storage import database, fulltext
from memchat.storage.models import (
    ApiKey,
    ApiKeyPublic,
    KeyCheck,
    Message,
    MessageCreate,
    MessagePublic,
    MessageTokens,
    MessageVector,
    Summary,
    SummaryCreate,
    SummaryPublic,
    Thread,
    ThreadBase,
    ThreadCreate,
    ThreadLease,
    ThreadPublic,
    ThreadUpdate,
    as_utc,
    check_text,
    utcnow,
)
from memchat.results import SearchHit
from memchat.storage.recent import HistoryRow, RecentHistories, RecentHistory
from memchat.transfer import ImportResult

EXPORT_PAGE = 2000
AMBIGUOUS_SHOWN = 5
"""Matching ids an ambiguous prefix's error lists."""
IMPORT_CHUNK = 2000
"""Messages an import writes per transaction: each holds SQLite's write lock for tens of ms."""
IMPORT_PAUSE_SECONDS = 0.005
"""Between an import's transactions, so a writer waiting on SQLite's busy handler gets the lock."""
ABANDONED_IMPORT_SECONDS = 24 * 3600
COUNTS_LOCK_WAIT_MS = 100
"""How long saving token counts (a cache) waits for a lock on PostgreSQL: under its deadlock check."""
LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock wait past `lock_timeout`."""
LAST_POSSIBLE_POSITION = 2**31 - 1
UNFORKED_KEPT = 10_000
"""Threads a process remembers inherit nothing (a thread that inherits nothing never will)."""
Segment = tuple[str, int, int]
"""Positions `first` to `last` of a thread's history, stored as messages of thread `thread`."""
_BM25 = "bm25(messages_fts, 1.0, 0.0)"
"""Relevance from message contents only (the index's second column is the thread id)."""
_HEADLINE = (
    f"StartSel={fulltext.HIGHLIGHT_START}, StopSel={fulltext.HIGHLIGHT_END}, "
    "MaxWords=24, MinWords=10"
)


def _union_of_originals_and_copies(columns: str, scope: list[str], order: str, *, copies: bool = True) -> str:
    """Index hits (`hits`: original, ...) as the messages they stand for, the originals and
    (unless the scope is one thread that is no fork, which holds no copies) every fork copy of
    them (0010), within `scope` and threads not being imported (`t`), ordered and limited."""
    where = (" WHERE " + " AND ".join(scope)) if scope else ""
    threads = " JOIN threads t ON t.id = m.thread_id AND t.import_holder IS NULL"
    union = f"UNION ALL SELECT {columns} FROM hits h JOIN messages m ON m.copied_from = h.original{threads}{where} "
    return (
        f"SELECT {columns} FROM hits h JOIN messages m ON m.id = h.original{threads}{where} "
        f"{union if copies else ''}ORDER BY {order} LIMIT :limit"
    )


# The statements of a turn's hot path, built once: a turn runs a dozen of them, and building and
# compiling ORM statements again for each cost more than the database did.
_messages = Message.__table__
_threads = Thread.__table__
_leases = ThreadLease.__table__


def _last_position(thread_id, inherits_through):
    """A thread's last position: its own last message's, else (a fork that has said nothing yet)
    the last one it inherits (a fork's own messages all come after those it inherits)."""
    own = select_columns(func.max(_messages.c.position)).where(_messages.c.thread_id == thread_id).scalar_subquery()
    return func.coalesce(own, inherits_through)


_LAST_POSITION = select_columns(
    _last_position(
        bindparam("thread_key"),
        select_columns(_threads.c.inherits_through).where(_threads.c.id == bindparam("thread_key")).scalar_subquery(),
    )
)
_LINEAGE_STEP = select_columns(_threads.c.forked_from, _threads.c.inherits_through).where(
    _threads.c.id == bindparam("thread_key")
)
_LOCKED_LINEAGE_STEP = _LINEAGE_STEP.with_for_update()
"""A fork's row held while what it inherits is copied into it: two writers copying into the same
fork one after the other, the second sees what the first took (PostgreSQL; SQLite writers take
turns anyway)."""


def _in_segment(first=None, last=None):
    """Positions in the segment (`seg_first`..`seg_last`) and, as well, in [first, last] (SQL
    expressions), as one range: given a second range on the same column, SQLite's planner may
    read the index over the looser one and filter the rest row by row (a turn's window read a
    100,000-message thread whole)."""
    low, high = bindparam("seg_first", type_=Integer), bindparam("seg_last", type_=Integer)
    if first is not None:
        low = case((low > first, low), else_=first)
    if last is not None:
        high = case((high < last, high), else_=last)
    return _messages.c.position.between(low, high)


_IN_SEGMENT = _in_segment()
"""Every read of a thread's messages by position runs once for each segment of its lineage
(`Store._lineage`): the thread's own positions, then those each origin gives it."""


def _position(name: str, step: int = 0):
    """A position given as a parameter, one place on (`step` 1) or back (-1): `> p` as `>= p + 1`."""
    given = bindparam(name, type_=Integer)
    return given + step if step else given


_INHERITING = select_columns(_threads.c.id).where(
    _threads.c.forked_from == bindparam("thread_key"), _threads.c.inherits_through >= bindparam("from_position")
)
_INHERIT_LESS = (
    update(_threads)
    .where(_threads.c.id == bindparam("thread_key"))
    .values(inherits_through=bindparam("through"), history_version=_threads.c.history_version + 1)
)
_INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
_INSERT_TOKENS = insert(MessageTokens.__table__)
_TOUCH_THREAD = (
    update(_threads)
    .where(_threads.c.id == bindparam("thread_key"))
    .values(updated_at=bindparam("now"), history_version=_threads.c.history_version + 1)
    .returning(_threads.c.history_version)
)
_keys = ApiKey.__table__
_EVERY_KEY = select_columns(_keys.c.name, _keys.c.key_hash, _keys.c.revoked_at)
_THREAD_WITH_LAST_POSITION = select_columns(
    _threads, _last_position(_threads.c.id, _threads.c.inherits_through).label("last_position")
).where(_threads.c.id == bindparam("thread_key"))
_HELD_UNDER = func.coalesce(_messages.c.copied_from, _messages.c.id)
"""The message whose token counts, index entry and vectors a message shares: a fork's copy
(`copied_from`, revision 0010) its original's, any other its own."""
_HISTORY_VERSION = select_columns(_threads.c.history_version).where(_threads.c.id == bindparam("thread_key"))
_LOCKED_HISTORY_VERSION = _HISTORY_VERSION.with_for_update()
_SET_STATUS = update(_messages).where(_messages.c.id == bindparam("message_key")).values(status=bindparam("new_status"))
_FINISH_USER_MESSAGE = _SET_STATUS.returning(_messages.c.thread_id, _messages.c.position)
_LEASE_HOLDER = select_columns(_leases.c.holder, _leases.c.expires_at).where(_leases.c.thread_id == bindparam("thread_key"))
_LOCKED_LEASE = _LEASE_HOLDER.with_for_update()
_SET_LEASE = (
    update(_leases)
    .where(_leases.c.thread_id == bindparam("thread_key"))
    .values(holder=bindparam("new_holder"), expires_at=bindparam("until"))
)
_tokens = MessageTokens.__table__
_shared_tokens = _tokens.alias("shared_tokens")
_COUNTED = func.coalesce(_tokens.c.tokens, _shared_tokens.c.tokens).label("tokens")
"""A message's token count: its own, else (a fork's copy) its original's, which a fork does not
copy: the same text counts the same."""


def _with_counts(query):
    return query.outerjoin(
        _tokens, (_tokens.c.message_id == _messages.c.id) & (_tokens.c.tokenizer == bindparam("tokenizer_name"))
    ).outerjoin(
        _shared_tokens,
        (_shared_tokens.c.message_id == _messages.c.copied_from) & (_shared_tokens.c.tokenizer == bindparam("tokenizer_name")),
    )


def _history_page(segment):
    return (
        _with_counts(
            select_columns(_messages.c.id, _messages.c.position, _messages.c.role, _COUNTED, _messages.c.context_limit)
        )
        .where(_messages.c.thread_id == bindparam("thread_key"), segment, _messages.c.status == literal_column("'complete'"))
        .order_by(_messages.c.position.desc())
        .limit(bindparam("page"))
    )


_HISTORY_PAGE = _history_page(_IN_SEGMENT)
_HISTORY_PAGE_BEFORE = _history_page(_in_segment(last=_position("before_position", -1)))
_HISTORY_TAIL = (
    _with_counts(
        select_columns(
            _messages.c.id, _messages.c.position, _messages.c.role, _COUNTED, _messages.c.context_limit,
            _messages.c.status, _messages.c.content,
        )
    )
    .where(_messages.c.thread_id == bindparam("thread_key"), _in_segment(first=_position("after_position", 1)))
    .order_by(_messages.c.position.desc())
)
_CONTENTS_FROM = select_columns(_messages.c.id, _messages.c.content).where(
    _messages.c.thread_id == bindparam("thread_key"),
    _in_segment(first=_position("first_position")),
    _messages.c.status == literal_column("'complete'"),
)
_LAST_USER_MESSAGE = (
    select_columns(_messages)
    .where(
        _messages.c.thread_id == bindparam("thread_key"),
        _IN_SEGMENT,
        _messages.c.role == literal_column("'user'"),
        _messages.c.status != literal_column("'undone'"),
    )
    .order_by(_messages.c.position.desc())
    .limit(1)
)
_summaries = Summary.__table__
_RECALLABLE = (
    _messages.c.thread_id == bindparam("thread_key"),
    _messages.c.status == literal_column("'complete'"),
    _messages.c.role.in_([literal_column("'user'"), literal_column("'assistant'")]),
)
"""What recall may bring: a thread's completed user and assistant messages."""
_RECALLABLE_AT = select_columns(_messages).where(
    *_RECALLABLE,
    _messages.c.position.in_(bindparam("positions", expanding=True)),
    # The segment checked on each row found (`+ 0`: no index range), so that the positions are
    # looked up one by one; given the segment's range, SQLite read every message in it.
    (_messages.c.position + 0).between(bindparam("seg_first"), bindparam("seg_last")),
)


class Recallable(NamedTuple):
    """A message recall found by its words, as re-ranking it by meaning reads it (an inherited
    message's id is its origin's, whose vector it shares)."""

    id: int
    position: int
    content: str


_vectors = MessageVector.__table__
_UNEMBEDDED = (
    select_columns(_messages)
    .where(
        *_RECALLABLE,
        _in_segment(last=_position("before_position", -1)),
        ~exists().where(
            _vectors.c.message_id == _HELD_UNDER,
            _vectors.c.model == bindparam("vector_model"),
        ),
    )
    .order_by(_messages.c.position.desc())
    .limit(bindparam("batch"))
)
"""A segment's recallable messages older than `before_position` that have no vector by the
model yet, newest first."""


_SAID_FROM = (
    select_columns(_messages.c.position, _messages.c.created_at)
    .where(_messages.c.thread_id == bindparam("thread_key"), _in_segment(first=_position("from_position")))
    .order_by(_messages.c.position)
    .limit(1)
)
_SAID_BETWEEN = (
    select_columns(_messages.c.position, _messages.c.created_at)
    .where(
        _messages.c.thread_id == bindparam("thread_key"),
        _in_segment(first=_position("first"), last=_position("last", -1)),
        _messages.c.created_at >= bindparam("start"),
        _messages.c.created_at < bindparam("end"),
        _messages.c.status == literal_column("'complete'"),
        _messages.c.role.in_(["user", "assistant"]),
    )
    .order_by(_messages.c.position.desc())
    .limit(bindparam("scan"))
)
_SNIPPETS = text(
    "SELECT rowid, snippet(messages_fts, 0, char(2), char(3), '…', 16) FROM messages_fts "
    "WHERE messages_fts MATCH :match AND rowid IN :originals"
).bindparams(bindparam("originals", expanding=True))
_copies, _originals = _messages.alias("copies"), _messages.alias("originals")
_ORIGINAL_THREADS = (
    select_columns(_originals.c.thread_id)
    .select_from(_copies.join(_originals, _originals.c.id == _copies.c.copied_from))
    .where(_copies.c.thread_id.in_(bindparam("thread_keys", expanding=True)), _copies.c.copied_from.isnot(None))
    .distinct()
)
_MESSAGE_COPIED = [c.name for c in _messages.c if c.name not in ("id", "thread_id", "copied_from")]
_COPY_MESSAGES = insert(_messages).from_select(
    ["thread_id", *_MESSAGE_COPIED, "copied_from"],
    select_columns(
        bindparam("new_thread", type_=String).label("thread_id"),
        *(_messages.c[name] for name in _MESSAGE_COPIED),
        # the indexed original: a copy is found through its entry, never indexed again (0010)
        _HELD_UNDER,
    ).where(
        _messages.c.thread_id == bindparam("old_thread"),
        _messages.c.position >= bindparam("first"),
        _messages.c.position <= bindparam("through"),
    ),
)
"""What a fork inherits from one thread of its lineage, from position `first` on, made its own
(a copy on write)."""


def _thread_messages(first=None, last=None):
    """A thread's messages in one segment of its lineage, within [first, last] if given, narrowed
    and ordered by the caller."""
    return select_columns(_messages).where(_messages.c.thread_id == bindparam("thread_key"), _in_segment(first, last))


_THREAD_MESSAGES = _thread_messages()
_NOT_UNDONE = _messages.c.status != literal_column("'undone'")
_UNFINISHED_IN_SEGMENT = select_columns(func.count()).where(
    _messages.c.thread_id == bindparam("thread_key"),
    _IN_SEGMENT,
    _messages.c.status != literal_column("'complete'"),  # a literal, as the partial index says
    _NOT_UNDONE,
)
_SUMMARY_COPIED = [c.name for c in _summaries.c if c.name not in ("id", "thread_id")]
_COPY_SUMMARIES = insert(_summaries).from_select(
    ["thread_id", *_SUMMARY_COPIED],
    select_columns(bindparam("new_thread", type_=String).label("thread_id"), *(_summaries.c[name] for name in _SUMMARY_COPIED))
    .where(_summaries.c.thread_id == bindparam("old_thread"), _summaries.c.last_position <= bindparam("through"))
    .order_by(_summaries.c.id),
)
_RELEASE_LEASE = delete(_leases).where(
    _leases.c.thread_id == bindparam("thread_key"), _leases.c.holder == bindparam("old_holder")
)


def _word_matches(listed: str | None, complete: bool, *, context: bool) -> fulltext.WordMatches:
    """A word's matches from the statement's "position seconds,..." list."""
    said = [pair.split(" ") for pair in listed.split(",")] if listed else []
    return fulltext.WordMatches([int(p) for p, _ in said], [float(t) for _, t in said], complete, context)


def _in_lineage(lineage: Sequence[Segment]) -> tuple[str, dict[str, Any]]:
    """SQL that holds for a message `m` of the thread whose lineage this is, and its parameters."""
    terms, params = [], {}
    for index, (thread, first, last) in enumerate(lineage):
        terms.append(f"(m.thread_id = :segment{index} AND m.position BETWEEN :first{index} AND :last{index})")
        params.update({f"segment{index}": thread, f"first{index}": first, f"last{index}": last})
    return "(" + " OR ".join(terms) + ")", params


def _word_matches_statement(
    words: Sequence[str], sources: list[str], sqlite: bool, lineage: Sequence[Segment]
) -> tuple[str, dict[str, Any]]:
    """For recall: for each word (by its index) found in the thread, the number of index entries
    read (the newest :scan entries holding it, in the thread and its fork ancestors) and, as a
    comma-separated list of "position seconds", the thread's messages they stand for (the
    entry's own, or its copy's in a fork) among those recall may bring (older than :before,
    completed, a user's or an assistant's) and when each was said."""
    in_thread, params = _in_lineage(lineage)
    recallable = f"{in_thread} AND m.position < :before AND m.status = 'complete' AND m.role IN ('user', 'assistant')"
    epoch = "strftime('%s', m.created_at)" if sqlite else "extract(epoch from m.created_at)::bigint"
    said = f"m.position || ' ' || {epoch}"
    position = f"(SELECT {said} FROM messages m WHERE m.id = h.original AND {recallable})"
    if len(sources) > 1:
        position = f"coalesce({position}, (SELECT {said} FROM messages m WHERE m.copied_from = h.original AND {recallable}))"
    tables, selects = [], []
    listed = "group_concat(said)" if sqlite else "string_agg(said, ',')"
    for index, word in enumerate(words):
        if sqlite:
            tables.append(
                f"h{index} AS (SELECT rowid AS original FROM messages_fts WHERE messages_fts MATCH :match{index} "
                "ORDER BY rowid DESC LIMIT :scan)"
            )
            params[f"match{index}"] = fulltext.fts5_scoped(f'"{word}"', sources)
        else:
            tables.append(
                f"h{index} AS (SELECT o.id AS original FROM messages o "
                f"WHERE to_tsvector('english', o.content) @@ to_tsquery('english', :match{index}) "
                "AND o.copied_from IS NULL AND o.thread_id = ANY(:sources) ORDER BY o.id DESC LIMIT :scan)"
            )
            params[f"match{index}"] = word
        selects.append(f"SELECT {index} AS word, {position} AS said FROM h{index} h")
    if not sqlite:
        params["sources"] = sources
    union = " UNION ALL ".join(selects)
    return f"WITH {', '.join(tables)} SELECT word, count(*), {listed} FROM ({union}) found GROUP BY word", params


@dataclass(frozen=True)
class ThreadRecord:
    """A thread to be written whole, as an import brings it: message rows as column dicts."""

    thread: ThreadCreate
    messages: Sequence[dict[str, Any]]
    summaries: Sequence[SummaryCreate] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    forked_from: str | None = None
    forked_at: int | None = None
    source: str | None = None
    """Where the thread was imported from: a thread of this tenant with the same source is
    kept as it is and this record is not written (`ImportResult.existing`)."""
    forked_from_source: str | None = None
    """The source of the thread this one was forked from, when that thread is imported too (or
    was before): its id is known only once it is written."""


class Store:
    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self.engine = database.make_engine(url)
        self._write_engine = (
            database.make_engine(url, immediate=True) if self.engine.dialect.name == "sqlite" else self.engine
        )
        self._read_engine = database.snapshot_reads(self.engine)
        self._writers = database.writer_queue(self.engine)
        self._migrate = migrate
        self._ready = False
        self._ready_lock = threading.Lock()
        self._local = threading.local()
        self._recent = RecentHistories()
        self._unforked: dict[str, None] = {}
        self.tenant: str | None = None
        self._owner = True

    def for_tenant(self, tenant: str) -> Store:
        """The same database seen by one tenant: only its threads, and the threads it makes are
        its own. Shares this store's connections (closing it closes nothing)."""
        view = copy.copy(self)
        view.tenant = tenant
        view._owner = False
        return view

    def _visible(self, query):
        """`query` over threads, narrowed to this store's tenant if it has one."""
        return query if self.tenant is None else query.where(Thread.tenant == self.tenant)

    @property
    def _shared(self) -> Session | None:
        """The snapshot session of the calling thread: a Store may be shared by threads, and each
        thread's reads must see its own transaction (a session is not safe to share)."""
        return getattr(self._local, "session", None)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads made inside share one session and connection instead of one each."""
        if self._shared is not None:
            yield
            return
        with _Transaction(self, commit=False) as session:
            self._local.session = session
            try:
                yield
            finally:
                self._local.session = None

    def prepare(self) -> None:
        """Bring the schema up to date now rather than on first use."""
        if not self._ready:
            self._ready_lock.acquire()
            try:
                if not self._ready and self._migrate:
                    database.ensure_current(self.engine)
                self._ready = True
            finally:
                self._ready_lock.release()

    def _session(self, *, write: bool = False) -> Session:
        self.prepare()
        return Session(self._write_engine if write else self._read_engine, expire_on_commit=False)

    def close(self) -> None:
        if self._owner:
            self.engine.dispose()
            self._write_engine.dispose()

    # threads

    def create_thread(self, data: ThreadCreate, messages: Sequence[MessageCreate] = ()) -> ThreadPublic:
        """A new thread, with its first messages if given, in one transaction."""
        thread = Thread.model_validate(data, update={"tenant": self.tenant})
        with self._writing() as session:
            session.add(thread)
            session.flush()
            for message in messages:
                self._append(session, thread, message, None)
        return ThreadPublic.model_validate(thread, update={"message_count": len(messages)})

    def fork_thread(self, thread_id: str, through: int | None, *, lease_holder: str) -> ThreadPublic:
        """A new thread with the settings of `thread_id` and its history up to position
        `through` (None: all; -1: none), in one transaction: the fork reads those messages from
        the original (revision 0012: nothing is copied, counted or indexed again, whatever the
        length) and gets a copy of the summaries whose span lies inside. The original is only
        read (under its turn lease, so no turn is half-taken); a later change to a message a
        fork reads copies it into the fork first (`_before_change`)."""
        with self._writing() as session:
            origin = self._resolve(session, thread_id)
            self._check_lease(session, origin.id, lease_holder)
            last = session.execute(_LAST_POSITION, {"thread_key": origin.id}).scalar()
            last = -1 if last is None else last
            through = last if through is None else through
            if not -1 <= through <= last:
                raise InvalidInput(
                    f"thread {origin.id} has messages #0 to #{last}: fork at one of them, or at -1 for none"
                    if last >= 0 else f"thread {origin.id} has no messages: fork it at -1 (its settings alone)"
                )
            settings = origin.model_dump(include=set(ThreadBase.model_fields))
            fork = Thread(
                **settings,
                tenant=origin.tenant,
                forked_from=origin.id,
                forked_at=through,
                inherits_through=through if through >= 0 else None,
            )
            session.add(fork)
            session.flush()
            session.execute(_COPY_SUMMARIES, {"old_thread": origin.id, "new_thread": fork.id, "through": through})
            return ThreadPublic.model_validate(fork, update={"message_count": through + 1})

    def append_messages(
        self, thread_id: str, messages: Sequence[MessageCreate], *, lease_holder: str | None = None
    ) -> list[MessagePublic]:
        """Messages added in one transaction; with `lease_holder`, only while it holds the turn lease."""
        with self._writing() as session:
            thread = self._resolve(session, thread_id)
            self._check_lease(session, thread.id, lease_holder)
            return [self._append(session, thread, message, None) for message in messages]

    def message_at(self, thread_id: str, position: int) -> MessagePublic:
        """The thread's message at `position` (NotFound if it has none there)."""
        with self._core_reading() as connection:
            rows = self._across(
                connection, thread_id, _THREAD_MESSAGES.where(_messages.c.position == bindparam("at")), {"at": position}, limit=1
            )
        if not rows:
            raise NotFound(f"thread {thread_id} has no message #{position}")
        return _message_of(rows[0], thread_id)

    def thread(self, ref: str) -> ThreadPublic:
        """The thread an id (or an unambiguous prefix of one) names: a whole id, what every turn
        gives, is one Core statement with its message count."""
        ref = _checked_ref(ref)
        with self._core_reading() as connection:
            row = connection.execute(_THREAD_WITH_LAST_POSITION, {"thread_key": ref}).first()
        if row is not None and row.import_holder is None and self.tenant in (None, row.tenant):
            fields = row._asdict()
            return ThreadPublic.model_validate({**fields, "message_count": _count_from_last(fields.pop("last_position"))})
        with self._reading() as session:
            return self._public(session, self._resolve(session, ref))

    def threads(self) -> list[ThreadPublic]:
        """Message counts from each thread's last position: one index probe a thread."""
        last = _last_position(_threads.c.id, _threads.c.inherits_through)
        query = self._visible(
            select(Thread, last)
            .where(col(Thread.import_holder).is_(None))
            .order_by(col(Thread.updated_at).desc(), col(Thread.id))
        )
        unfinished = (
            select(Message.thread_id, func.count())
            # 'complete' a literal, as the partial index says
            .where(Message.status != literal_column("'complete'"), Message.status != "undone")
            .group_by(Message.thread_id)
        )
        with self._reading() as session:
            own = dict(session.exec(unfinished).all())
            counts = dict(own)
            listed = session.exec(query).all()
            for thread, _ in listed:
                # what a fork inherits unfinished (a failed turn it may retry), where an origin has any
                if thread.inherits_through is not None and own:
                    counts[thread.id] = counts.get(thread.id, 0) + sum(
                        session.execute(
                            _UNFINISHED_IN_SEGMENT, {"thread_key": origin, "seg_first": first, "seg_last": through}
                        ).scalar_one()
                        for origin, first, through in self._lineage(session, thread.id)[1:]
                        if origin in own
                    )
            return [
                ThreadPublic.model_validate(
                    thread,
                    update={"message_count": _count_from_last(position), "unfinished_count": counts.get(thread.id, 0)},
                )
                for thread, position in listed
            ]

    def usage_totals(self, thread_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Sums over the messages and summaries of every thread, or of one (one grouped query
        of each table)."""
        totals: dict[str, dict[str, Any]] = {}
        with self._reading() as session:
            for table in (Message, Summary):
                query = select(
                    table.thread_id,
                    func.coalesce(func.sum(table.prompt_tokens), 0),
                    func.coalesce(func.sum(table.completion_tokens), 0),
                    func.coalesce(func.sum(table.cost), 0.0),
                ).group_by(table.thread_id)
                if thread_id is not None:
                    query = query.where(table.thread_id == thread_id)
                elif self.tenant is not None:
                    query = query.join(Thread, Thread.id == table.thread_id).where(Thread.tenant == self.tenant)
                for owner, prompt, completion, cost in session.exec(query).all():
                    entry = totals.setdefault(owner, {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0})
                    entry["prompt_tokens"] += int(prompt)
                    entry["completion_tokens"] += int(completion)
                    entry["cost"] = float(f"{entry['cost'] + float(cost):.10g}")
        return totals

    def usage_stats(self, *, thread_id: str | None, by: str | None, since: datetime | None) -> dict[str, list[dict]]:
        """Where tokens went: model calls (turns, with their failures and cut-offs) and summary
        calls apart, each grouped `by` model, day or thread (None: one row), aggregated in SQL.
        A fork's copies cost nothing again: rows a fork copied are left out (a copy's
        `copied_from`; a summary older than the fork that holds it)."""
        with self._reading() as session:
            sqlite = self._dialect(session) == "sqlite"
            return {
                "turns": self._stats_rows(session, _messages, thread_id, by, since, sqlite),
                "summaries": self._stats_rows(session, _summaries, thread_id, by, since, sqlite),
            }

    def _stats_rows(self, session: Session, table, thread_id: str | None, by: str | None, since, sqlite: bool) -> list[dict]:
        replies = table is _messages
        day = (
            func.date(table.c.created_at)
            if sqlite
            else func.to_char(func.timezone("UTC", table.c.created_at), "YYYY-MM-DD")
        )
        group = {
            "model": func.coalesce(table.c.model, _threads.c.model, literal_column("'(default)'")),
            "day": day,
            "thread": table.c.thread_id,
            None: literal_column("'all'"),
        }[by]
        scope = [_threads.c.import_holder.is_(None)]
        if replies:
            scope.append(table.c.copied_from.is_(None))
        else:
            scope.append((_threads.c.forked_from.is_(None)) | (table.c.created_at >= _threads.c.created_at))
        if thread_id is not None:
            scope.append(table.c.thread_id == thread_id)
        if since is not None:
            scope.append(table.c.created_at >= since)
        if self.tenant is not None:
            scope.append(_threads.c.tenant == self.tenant)
        joined = table.join(_threads, _threads.c.id == table.c.thread_id)
        calls = [table.c.role == literal_column("'assistant'"), table.c.model.isnot(None)] if replies else []
        one = literal_column("1")
        counted = [
            group.label("key"),
            func.count().label("calls"),
            func.sum(table.c.prompt_tokens).label("prompt_tokens"),
            func.sum(table.c.completion_tokens).label("completion_tokens"),
            func.sum(table.c.cost).label("cost"),
            func.sum(case((table.c.cost.is_(None), one), else_=0)).label("unknown_cost"),
        ]
        if replies:
            counted.append(func.sum(case((table.c.status == literal_column("'partial'"), one), else_=0)).label("partial"))
        grouped = (lambda query: query) if by is None else (lambda query: query.group_by(group))
        rows = {
            row.key: dict(row._mapping)
            for row in session.execute(grouped(select_columns(*counted).select_from(joined).where(*scope, *calls)))
            if row.calls
        }
        latencies = self._latency_percentiles(session, table, group, joined, [*scope, *calls], by is None)
        failed = self._unanswered_turns(session, group, joined, scope, grouped) if replies else {}
        result = []
        for key in sorted(set(rows) | set(failed), key=str):
            row = rows.get(key) or {"calls": 0, "prompt_tokens": None, "completion_tokens": None, "cost": None, "unknown_cost": 0}
            p50, p95 = latencies.get(key, (None, None))
            entry = {
                by or "group": str(key),
                "calls": int(row["calls"]),
                "prompt_tokens": int(row["prompt_tokens"] or 0),
                "completion_tokens": int(row["completion_tokens"] or 0),
                "cost": float(f"{float(row['cost']):.10g}") if row["cost"] is not None else None,
                "unknown_cost": int(row["unknown_cost"] or 0),
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
            }
            if replies:
                entry.update(partial=int(row.get("partial") or 0), failed=failed.get(key, 0))
            result.append(entry)
        if by == "thread" and result:
            titles = self._titles({entry["thread"] for entry in result})
            for entry in result:
                entry["title"] = titles.get(entry["thread"], "")
        return result

    @staticmethod
    def _latency_percentiles(session: Session, table, group, joined, scope: list, whole: bool) -> dict[Any, tuple]:
        """(p50, p95) latency of each group, nearest rank, by window functions (SQLite has no
        percentile function; PostgreSQL's would need another query for each group)."""
        partition = None if whole else group
        ranked = (
            select_columns(
                group.label("key"),
                table.c.latency_ms.label("latency"),
                func.row_number().over(partition_by=partition, order_by=table.c.latency_ms).label("rank"),
                func.count().over(partition_by=partition).label("size"),
            )
            .select_from(joined)
            .where(*scope, table.c.latency_ms.isnot(None))
            .subquery()
        )
        percentiles = select_columns(
            func.min(ranked.c.key).label("key"),
            func.min(case((ranked.c.rank >= 0.5 * ranked.c.size, ranked.c.latency))).label("p50"),
            func.min(case((ranked.c.rank >= 0.95 * ranked.c.size, ranked.c.latency))).label("p95"),
        )
        return {
            row.key: (row.p50, row.p95)
            for row in session.execute(percentiles if whole else percentiles.group_by(ranked.c.key))
            if row.key is not None
        }

    @staticmethod
    def _unanswered_turns(session: Session, group, joined, scope: list, grouped) -> dict[Any, int]:
        """Turns that got no reply at all, by group: the user message failed, and no cut-off reply follows it."""
        reply = _messages.alias("reply")
        answered = (
            select_columns(literal_column("1"))
            .where(
                reply.c.thread_id == _messages.c.thread_id,
                reply.c.position == _messages.c.position + 1,
                reply.c.role == literal_column("'assistant'"),
            )
            .exists()
        )
        query = grouped(
            select_columns(group.label("key"), func.count().label("turns"))
            .select_from(joined)
            .where(
                *scope, _messages.c.role == literal_column("'user'"), _messages.c.status == literal_column("'failed'"), ~answered
            )
        )
        return {row.key: row.turns for row in session.execute(query) if row.turns}

    def latest_thread(self) -> ThreadPublic:
        query = self._visible(
            select(Thread)
            .where(col(Thread.import_holder).is_(None))
            .order_by(col(Thread.updated_at).desc(), col(Thread.id))
            .limit(1)
        )
        with self._reading() as session:
            thread = session.exec(query).first()
            if thread is None:
                raise NotFound("no threads yet: `memchat new` starts one")
            return self._public(session, thread)

    def rename(self, ref: str, title: str) -> ThreadPublic:
        with self._writing() as session:
            thread = self._resolve(session, ref)
            thread.title = title
            thread.updated_at = utcnow()
            session.add(thread)
            session.flush()
            return self._public(session, thread)

    def update_thread(self, ref: str, changes: ThreadUpdate) -> ThreadPublic:
        with self._writing() as session:
            thread = self._resolve(session, ref)
            for field, value in changes.model_dump(exclude_unset=True).items():
                setattr(thread, field, value)
            thread.updated_at = utcnow()
            session.add(thread)
            session.flush()
            return self._public(session, thread)

    def delete_thread(self, ref: str) -> str:
        with self._writing() as session:
            thread = self._resolve(session, ref)
            self._delete(session, thread)
            return thread.id

    def _delete(self, session: Session, thread: Thread) -> None:
        """The thread and all it holds; the forks that read its messages copy them first (what
        the thread itself inherits is left where it is)."""
        self._forks_take_theirs(session, thread.id, 0)
        message_ids = select(Message.id).where(Message.thread_id == thread.id)
        session.exec(delete(MessageTokens).where(col(MessageTokens.message_id).in_(message_ids)))
        session.exec(delete(MessageVector).where(col(MessageVector.message_id).in_(message_ids)))
        session.exec(delete(ThreadLease).where(col(ThreadLease.thread_id) == thread.id))
        session.exec(delete(Summary).where(col(Summary.thread_id) == thread.id))
        session.exec(delete(Message).where(col(Message.thread_id) == thread.id))
        session.delete(thread)

    # messages

    def messages(
        self, ref: str, *, statuses: Iterable[str] | None = None, last: int | None = None
    ) -> list[MessagePublic]:
        """The thread's messages in order; with `last`, only the newest that many (read newest
        first over the index, so a long thread costs no more)."""
        with self._reading() as session:
            thread = self._resolve(session, ref)
            query = _THREAD_MESSAGES
            if statuses is not None:
                query = query.where(_messages.c.status.in_(list(statuses)))
            if last is not None:
                query = query.order_by(_messages.c.position.desc()).limit(bindparam("page"))
                newest = self._across(session, thread.id, query, {}, limit=last, limit_key="page")
                return [_message_of(row, thread.id) for row in reversed(newest)]
            rows = self._across(session, thread.id, query.order_by(_messages.c.position), {}, oldest_first=True)
            return [_message_of(row, thread.id) for row in rows]

    def message_page(
        self, thread_id: str, *, after: int | None, limit: int, newest_first: bool
    ) -> tuple[list[MessagePublic], bool]:
        """Up to `limit` of the thread's messages after position `after` (None: from the start)
        in the order asked, and whether more follow; one index range read. Undone messages are
        left out: they are no longer part of the conversation."""
        query = _THREAD_MESSAGES
        if after is not None:
            anchor = "after_position"
            query = _thread_messages(last=_position(anchor, -1)) if newest_first else _thread_messages(_position(anchor, 1))
        query = query.where(_NOT_UNDONE)
        order = _messages.c.position.desc() if newest_first else _messages.c.position
        query = query.order_by(order).limit(bindparam("page"))
        with self._core_reading() as connection:
            rows = self._across(
                connection, thread_id, query, {"after_position": after}, oldest_first=not newest_first,
                limit=limit + 1, limit_key="page",
            )
        return [_message_of(row, thread_id) for row in rows[:limit]], len(rows) > limit

    def history_page(
        self, thread_id: str, tokenizer: str, *, before: int | None, limit: int, version: int | None = None
    ) -> list[HistoryRow]:
        """Up to `limit` completed messages older than position `before`, newest first.

        With the thread's `version` (`history_version`, read in the same snapshot before), pages
        come from this process's copy of the thread's recent history where it is exact, and
        what is read from the database is kept in it."""
        if version is None:
            return self._read_page(thread_id, tokenizer, before, limit)
        copy = self._recent.get(thread_id, tokenizer, version)
        if copy is None:
            if before is not None:
                return self._read_page(thread_id, tokenizer, before, limit)
            page = self._read_page(thread_id, tokenizer, None, limit)
            copy = RecentHistory(
                version=version,
                through=page[0].position if page else -1,
                rows=tuple(page),
                reaches_start=len(page) < limit,
            )
            self._recent.put(thread_id, tokenizer, copy, keep=4 * limit)
            return page
        if copy.stale_tail:
            if before is not None:
                return self._read_page(thread_id, tokenizer, before, limit)
            copy = self._with_tail(thread_id, tokenizer, copy)
        if not copy.covers(before, limit):
            oldest = copy.rows[-1].position if copy.rows else None
            if oldest is None or (before is not None and before < oldest):
                return self._read_page(thread_id, tokenizer, before, limit)
            wanted = limit - len(copy.older_than(before, limit))
            older = self._read_page(thread_id, tokenizer, oldest, wanted)
            copy = replace(copy, rows=copy.rows + tuple(older), reaches_start=len(older) < wanted)
        self._recent.put(thread_id, tokenizer, copy, keep=4 * limit)
        return copy.older_than(before, limit)

    def _read_page(self, thread_id: str, tokenizer: str, before: int | None, limit: int) -> list[HistoryRow]:
        query = _HISTORY_PAGE if before is None else _HISTORY_PAGE_BEFORE
        values = {"tokenizer_name": tokenizer, "before_position": before}
        with self._core_reading() as connection:
            return [HistoryRow(*row) for row in self._across(connection, thread_id, query, values, limit=limit, limit_key="page")]

    def _with_tail(self, thread_id: str, tokenizer: str, copy: RecentHistory) -> RecentHistory:
        """The copy with the messages a turn's commits added after it (`RecentHistories.advance`)."""
        values = {"tokenizer_name": tokenizer, "after_position": copy.through}
        with self._core_reading() as connection:
            tail = self._across(connection, thread_id, _HISTORY_TAIL, values)
        done = [row for row in tail if row.status == "complete"]
        return replace(
            copy,
            through=tail[0].position if tail else copy.through,
            rows=tuple(HistoryRow(*row[:5]) for row in done) + copy.rows,
            contents={**copy.contents, **{row.id: row.content for row in done}},
            stale_tail=False,
        )

    def contents_from(
        self, thread_id: str, position: int, *, tokenizer: str | None = None, version: int | None = None
    ) -> dict[int, str]:
        """The contents of the thread's completed messages from `position` on, by id: a turn's
        window is such a run, read over the (thread, position) index (or, at `version`, from
        this process's copy of the thread's recent history, which keeps what is read here)."""
        copy = self._recent.get(thread_id, tokenizer, version) if tokenizer and version is not None else None
        held = copy.contents_from(position) if copy is not None else None
        if held is not None:
            return held
        with self._core_reading() as connection:
            found = dict(self._across(connection, thread_id, _CONTENTS_FROM, {"first_position": position}))
        if copy is not None:
            self._recent.read(thread_id, tokenizer, version, found)
        return found

    def contents(self, message_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        with self._reading() as session:
            for start in range(0, len(message_ids), 500):
                chunk = list(message_ids[start : start + 500])
                query = select(Message.id, Message.content).where(col(Message.id).in_(chunk))
                found.update(session.exec(query).all())
        return found

    def messages_after(self, thread_id: str, after: int, through: int, *, limit: int) -> list[MessagePublic]:
        """Completed messages with positions in (after, through], oldest first, at most `limit`."""
        query = (
            _thread_messages(_position("after_position", 1), _position("through_position"))
            .where(_messages.c.status == literal_column("'complete'"))
            .order_by(_messages.c.position)
            .limit(bindparam("page"))
        )
        values = {"after_position": after, "through_position": through}
        with self._core_reading() as connection:
            rows = self._across(connection, thread_id, query, values, oldest_first=True, limit=limit, limit_key="page")
        return [_message_of(row, thread_id) for row in rows]

    def messages_by_id(self, message_ids: Sequence[int]) -> dict[int, MessagePublic]:
        with self._reading() as session:
            rows = session.exec(select(Message).where(col(Message.id).in_(list(message_ids)))).all()
            return {m.id: MessagePublic.model_validate(m) for m in rows}

    # summaries

    def current_summary(self, thread_id: str) -> SummaryPublic | None:
        """The newest summary made for the thread: it folds every earlier one."""
        query = select(Summary).where(Summary.thread_id == thread_id).order_by(col(Summary.id).desc()).limit(1)
        with self._reading() as session:
            found = session.exec(query).first()
            return SummaryPublic.model_validate(found) if found is not None else None

    def summaries(self, thread_id: str) -> list[SummaryPublic]:
        query = select(Summary).where(Summary.thread_id == thread_id).order_by(col(Summary.id))
        with self._reading() as session:
            return [SummaryPublic.model_validate(s) for s in session.exec(query).all()]

    def add_summary(self, thread_id: str, summary: SummaryCreate, *, lease_holder: str | None = None) -> SummaryPublic:
        row = Summary.model_validate(summary, update={"thread_id": thread_id, "created_at": summary.created_at or utcnow()})
        with self._writing() as session:
            self._check_lease(session, thread_id, lease_holder)
            session.add(row)
            session.flush()
            return SummaryPublic.model_validate(row)

    # search

    def search(self, query: str, *, thread_id: str | None = None, limit: int = 20) -> list[SearchHit]:
        """Messages matching a search-box query (see `fulltext`), best first. Each index entry
        stands for its message and the fork copies of it (revision 0010)."""
        expression = fulltext.fts5_search(query)
        with self._reading() as session:
            sources = self._indexed_under(session, thread_id) if thread_id else None
            in_thread, lineage = _in_lineage(self._lineage(session, thread_id)) if thread_id else ("", {})
            scope = ([in_thread] if thread_id else []) + (["t.tenant = :tenant"] if self.tenant is not None else [])
            copies = sources != [thread_id]
            columns = "m.id AS id, h.original AS original, h.score AS score"
            sqlite = self._dialect(session) == "sqlite"
            if sqlite:
                match = fulltext.fts5_scoped(expression, sources)
                sql = (
                    f"WITH hits AS (SELECT rowid AS original, -{_BM25} AS score FROM messages_fts "
                    "WHERE messages_fts MATCH :match) "
                    + _union_of_originals_and_copies(columns, scope, "score DESC, id", copies=copies)
                )
                params = {"match": match, "limit": limit, **lineage}
            else:
                # The headline, the costly part, only for the hits shown.
                sql = (
                    "WITH q AS (SELECT websearch_to_tsquery('english', :query) AS q), "
                    "hits AS (SELECT o.id AS original, ts_rank_cd(to_tsvector('english', o.content), q.q) AS score "
                    "FROM messages o, q WHERE to_tsvector('english', o.content) @@ q.q AND o.copied_from IS NULL"
                    + (" AND o.thread_id = ANY(:sources)" if sources else "")
                    + ") SELECT r.id, ts_headline('english', o.content, q.q, :headline), r.score FROM ("
                    + _union_of_originals_and_copies(columns, scope, "score DESC, id", copies=copies)
                    + ") r JOIN messages o ON o.id = r.original, q ORDER BY r.score DESC, r.id"
                )
                params = {"query": query, "headline": _HEADLINE, "limit": limit, "sources": sources, **lineage}
            if not sources:
                params.pop("sources", None)
            if self.tenant is not None:
                params["tenant"] = self.tenant
            ranked = session.execute(text(sql), params).all()
            if sqlite and ranked:
                # Snippets only for the hits shown, not for every match of a common word.
                snippets = dict(session.execute(_SNIPPETS, {"match": match, "originals": list({r[1] for r in ranked})}).all())
                ranked = [(i, snippets.get(original, ""), score) for i, original, score in ranked]
        found = self.messages_by_id([row[0] for row in ranked])
        if thread_id:
            # a fork's inherited messages, found under their origin's id, shown as the fork's
            found = {i: message.model_copy(update={"thread_id": thread_id}) for i, message in found.items()}
        titles = self._titles({message.thread_id for message in found.values()})
        return [
            SearchHit(found[i], titles.get(found[i].thread_id, ""), snippet, float(score))
            for i, snippet, score in ranked
            if i in found
        ]

    @staticmethod
    def _indexed_under(session: Session | Connection, thread_id: str) -> list[str]:
        """The threads whose full-text entries stand for this thread's messages: its own and its
        fork ancestors' (a fork's copies point at their originals' entries). Where an ancestor
        is gone, what it gave was copied into the threads below it: copies of its own messages
        were indexed again (under those threads), copies of what it inherited point at their
        originals further up, whose threads are asked for directly (for every thread below it,
        not only the one searched: a fork of a fork reads the copies its origin holds)."""
        found = [thread_id]
        while True:
            parent = session.execute(_LINEAGE_STEP, {"thread_key": found[-1]}).first()
            if parent is None:
                originals = session.execute(_ORIGINAL_THREADS, {"thread_keys": found[:-1]}).scalars()
                return list(dict.fromkeys([*found[:-1], *originals]))
            if parent.forked_from is None or parent.forked_from in found:
                return found
            found.append(parent.forked_from)

    def _titles(self, thread_ids: set[str]) -> dict[str, str]:
        if not thread_ids:
            return {}
        with self._reading() as session:
            return dict(session.exec(select(Thread.id, Thread.title).where(col(Thread.id).in_(thread_ids))).all())

    def recall(
        self,
        thread_id: str,
        about: str,
        *,
        before: int,
        limit: int,
        context: str = "",
        similar: Callable[[list[Recallable]], dict[int, float]] | None = None,
    ) -> list[MessagePublic]:
        """The thread's completed user and assistant messages older than position `before` that
        best match `about`, best first, ranked by `fulltext.rank_recalled` (a fork's copies found
        through their originals' index entries, revision 0010). One statement reads, for each of
        `about`'s words, the newest index entries holding it in this thread (`fulltext.recall_scan`).
        `context`: what was said just before `about`, whose words count too, less than `about`'s
        (a turn gives it for a short message, `fulltext.SHORT_MESSAGE_WORDS`). `similar`: given
        the best matches, their similarity to `about` by meaning, by position (`memchat.recollection`)."""
        words = fulltext.recall_words(about)
        own = len(words)
        words += [word for word in fulltext.recall_words(context) if word not in words][: fulltext.MAX_RECALL_TERMS - own]
        if not words or before <= 0:
            return []
        with self._core_reading() as session:
            sources = self._indexed_under(session, thread_id)
            sqlite = self._dialect(session) == "sqlite"
            statement, params = _word_matches_statement(words, sources, sqlite, self._lineage(session, thread_id))
            scan = fulltext.recall_scan(len(words))
            rows = session.execute(text(statement), {**params, "before": before, "scan": scan})
            matches = [_word_matches(listed, read < scan, context=word >= own) for word, read, listed in rows]
            matches += [
                self._said_between(session, thread_id, since, until, before, scan)
                for since, until in fulltext.dates_named(about)
            ]
            found: dict[int, Any] = {}
            asked: set[int] = set()

            def recallable_at(positions: list[int]) -> list:
                """The rows at these positions that recall may bring, each read once a recall."""
                wanted = [p for p in positions if p not in asked]
                if wanted:
                    asked.update(wanted)
                    rows = self._across(session, thread_id, _RECALLABLE_AT, {"positions": wanted})
                    found.update((row.position, row) for row in rows)
                return [found[p] for p in positions if p in found]

            by_meaning = None
            if similar is not None:

                def by_meaning(positions: list[int]) -> dict[int, float]:
                    return similar([Recallable(row.id, row.position, row.content) for row in recallable_at(positions)])

            ranked = fulltext.rank_recalled(matches, before, keep=2 * limit + 16, similar=by_meaning)
            recalled: list[MessagePublic] = []
            # Neighbours that are not recallable (a system message, an undone turn) are passed over.
            size = max(2 * limit, 16)
            for start in range(0, len(ranked), size):
                if len(recalled) >= limit:
                    break
                taken = recallable_at(ranked[start : start + size])[: limit - len(recalled)]
                recalled += [_message_of(row, thread_id) for row in taken]
        return recalled

    def _said_between(
        self, session: Session | Connection, thread_id: str, start: datetime, end: datetime, before: int, scan: int
    ) -> fulltext.WordMatches:
        """The recallable messages said in [start, end), newest first, at most `scan`: found by
        halving the thread's positions (its messages are in the order they were said), so a
        date costs a few index reads whatever the thread's length."""

        def first_said_from(moment: datetime) -> int:
            low, high = 0, before
            while low < high:
                middle = (low + high) // 2
                found = self._across(session, thread_id, _SAID_FROM, {"from_position": middle}, oldest_first=True, limit=1)
                said = found[0] if found else None
                if said is not None and said.position < before and as_utc(said.created_at) < moment:
                    low = said.position + 1
                else:
                    high = middle
            return low

        first, last = first_said_from(start), first_said_from(end)
        rows = self._across(
            session,
            thread_id,
            _SAID_BETWEEN,
            {"first": first, "last": min(last, before), "start": start, "end": end},
            limit=scan,
            limit_key="scan",
        )
        return fulltext.WordMatches(
            [row.position for row in rows], [as_utc(row.created_at).timestamp() for row in rows], len(rows) < scan
        )

    def vectors(self, model: str, message_ids: Iterable[int]) -> dict[int, bytes]:
        """The vectors by `model` kept for these messages (`memchat.vectors`), by message id: a
        fork's copy of a message has its original's (the same text has the same vector)."""
        wanted = list(set(message_ids))
        if not wanted:
            return {}
        with self._reading() as session:
            rows = session.execute(
                select_columns(_messages.c.id, _vectors.c.vector)
                .join(_vectors, (_vectors.c.message_id == _HELD_UNDER) & (_vectors.c.model == model))
                .where(_messages.c.id.in_(wanted))
            )
            return {message_id: bytes(vector) for message_id, vector in rows}

    def save_vectors(self, model: str, vectors: dict[int, bytes]) -> None:
        """Keep vectors made for recall, a copy's under its original; one another process saved
        first is left as it is (the same model gives the same text the same vector). A message
        deleted meanwhile gets none."""
        if not vectors:
            return
        with self._writing() as session:
            owners = session.execute(select_columns(_messages.c.id, _HELD_UNDER).where(_messages.c.id.in_(list(vectors)))).all()
            present = set(session.execute(select(Message.id).where(col(Message.id).in_([o for _, o in owners]))).scalars())
            under = {owner: vectors[i] for i, owner in owners if owner in present}
            rows = [{"message_id": i, "model": model, "vector": v} for i, v in under.items()]
            if rows:
                session.execute(_insert_ignoring_duplicates(session, MessageVector), rows)

    def unembedded(self, thread_id: str, model: str, *, before: int, limit: int) -> list[MessagePublic]:
        """Up to `limit` of the thread's recallable messages (its own and what it inherits) older
        than position `before` that have no vector by `model`, newest first: a caller going
        through a thread passes the last position it was given, so no page reads again what
        an earlier one passed over."""
        values = {"vector_model": model, "before_position": before}
        with self._reading() as session:
            thread_id = self._resolve(session, thread_id).id
            rows = self._across(session, thread_id, _UNEMBEDDED, values, limit=limit, limit_key="batch")
            return [_message_of(row, thread_id) for row in rows]

    def save_token_counts(self, tokenizer: str, counts: dict[int, int], *, thread_id: str | None = None) -> None:
        """Keep counts made for a turn; a count another process saved first is left as it is
        (tokenizers are deterministic: it is the same), and so is a count of a message deleted
        since it was read (a read sees one snapshot: a fork's origin may be gone by now). The
        counts are a cache: on PostgreSQL they are not kept rather than wait for a lock on their
        messages (a thread being deleted holds those, and waiting could deadlock the delete)."""
        if not counts:
            return
        rows = [{"message_id": i, "tokenizer": tokenizer, "tokens": n} for i, n in counts.items()]
        with self._writing() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text(f"SET LOCAL lock_timeout = '{COUNTS_LOCK_WAIT_MS}ms'"))
            insert_counts = _insert_ignoring_duplicates(session, MessageTokens)
            try:
                try:
                    with session.begin_nested():
                        session.execute(insert_counts, rows)
                except IntegrityError:
                    existing = select_columns(_messages.c.id).where(_messages.c.id.in_(list(counts)))
                    kept = set(session.execute(existing).scalars())
                    if kept:
                        with session.begin_nested():
                            session.execute(insert_counts, [row for row in rows if row["message_id"] in kept])
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
        if thread_id is not None:
            self._recent.counted(thread_id, tokenizer, counts)

    def append(self, thread_id: str, message: MessageCreate, tokens: tuple[str, int] | None = None) -> MessagePublic:
        with self._writing() as session:
            thread = self._resolve(session, thread_id)
            return self._append(session, thread, message, tokens)

    def finish_turn(
        self,
        thread_id: str,
        user_message_id: int,
        reply: MessageCreate,
        tokens: tuple[str, int] | None = None,
        *,
        user_status: str = "complete",
        lease_holder: str | None = None,
        release: bool = False,
    ) -> MessagePublic:
        """Store the reply (complete, or partial with its user message marked failed), together;
        with `lease_holder`, only while that holder still has the thread's turn lease, and with
        `release`, giving the lease up in the same commit (a turn's second and last): the release
        is the check, a lease held by no one else is the one row it deletes."""
        with self._writing() as session:
            if release and lease_holder is not None:
                released = session.execute(_RELEASE_LEASE, {"thread_key": thread_id, "old_holder": lease_holder})
                if released.rowcount != 1:
                    raise LeaseLost(thread_id)
            else:
                self._check_lease(session, thread_id, lease_holder)
            seen = session.execute(_LOCKED_HISTORY_VERSION, {"thread_key": thread_id}).scalar()
            user = session.execute(_FINISH_USER_MESSAGE, {"message_key": user_message_id, "new_status": user_status}).first()
            if seen is None or user is None or user.thread_id != thread_id:
                raise NotFound(f"no message {user_message_id} in thread {thread_id}")
            stored = self._append(session, thread_id, reply, tokens)
            now = session.info["history_version"]
        self._recent.advance(thread_id, seen=seen, now=now, changed_from=user.position)
        return stored

    def set_status(self, thread_id: str, message_id: int, status: str) -> MessagePublic:
        """The status of a message of the thread (one it inherits is made its own first)."""
        with self._writing() as session:
            message = self._own_message(session, thread_id, message_id)
            message.status = status
            session.add(message)
            session.flush()
            return MessagePublic.model_validate(message)

    def undo_last_turn(self, thread_id: str, *, lease_holder: str) -> list[MessagePublic]:
        """Mark the thread's last turn undone: its last user message not undone yet, and every
        message after it (the reply, a partial one, notes). Nothing is deleted."""
        with self._writing() as session:
            self._check_lease(session, thread_id, lease_holder)
            found = self._across(session, thread_id, _LAST_USER_MESSAGE, {}, limit=1)
            if not found:
                raise InvalidInput(f"nothing to undo: thread {thread_id} has no turn left")
            user = found[0]
            self._before_change(session, thread_id, user.position)
            taken = session.exec(
                select(Message)
                .where(Message.thread_id == thread_id, Message.position >= user.position, Message.status != "undone")
                .order_by(col(Message.position))
            ).all()
            return self._undone(session, taken)

    def undo_message(self, thread_id: str, position: int, *, lease_holder: str) -> MessagePublic:
        """Mark one message undone (NotFound if there is none there, or it is undone already)."""
        with self._writing() as session:
            self._check_lease(session, thread_id, lease_holder)
            self._before_change(session, thread_id, position)
            message = session.exec(
                select(Message).where(
                    Message.thread_id == thread_id, Message.position == position, Message.status != "undone"
                )
            ).first()
            if message is None:
                raise NotFound(f"thread {thread_id} has no message #{position}")
            return self._undone(session, [message])[0]

    @staticmethod
    def _undone(session: Session, messages: Sequence[Message]) -> list[MessagePublic]:
        for message in messages:
            message.status = "undone"
            session.add(message)
        session.flush()
        return [MessagePublic.model_validate(message) for message in messages]

    def accept_partial(self, thread_id: str) -> MessagePublic:
        """Take the thread's last reply, cut off part-way, as complete: its turn then counts as
        answered and both messages enter later contexts."""
        newest = _THREAD_MESSAGES.where(_NOT_UNDONE).order_by(_messages.c.position.desc()).limit(bindparam("page"))
        with self._writing() as session:
            last = self._across(session, thread_id, newest, {}, limit=2, limit_key="page")
            if not last or last[0].status != "partial" or len(last) < 2 or last[1].role != "user":
                raise InvalidInput(f"nothing to accept: the last message of thread {thread_id} is not a cut-off reply")
            self._before_change(session, thread_id, last[1].position)
            last = [self._own_row_at(session, thread_id, row.position) for row in last]
            for message in last:
                message.status = "complete"
                session.add(message)
            session.flush()
            return MessagePublic.model_validate(last[0])

    def unanswered(self, thread_id: str) -> MessagePublic | None:
        """The thread's last user message, if its turn got no complete reply."""
        with self._core_reading() as connection:
            found = self._across(connection, thread_id, _LAST_USER_MESSAGE, {}, limit=1)
        return _message_of(found[0], thread_id) if found and found[0].status != "complete" else None

    # keys

    def add_key(self, name: str, key_hash: str, shown: str) -> ApiKeyPublic:
        with self._writing() as session:
            if session.get(ApiKey, name) is not None:
                raise InvalidInput(f"a key named {name!r} exists (or existed: a revoked key's name is not reused); choose another name")
            key = ApiKey(name=name, key_hash=key_hash, shown=shown)
            session.add(key)
            session.flush()
            return ApiKeyPublic.model_validate(key)

    def keys(self) -> list[ApiKeyPublic]:
        with self._reading() as session:
            return [ApiKeyPublic.model_validate(k) for k in session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all()]

    def revoke_key(self, name: str) -> ApiKeyPublic:
        with self._writing() as session:
            key = session.get(ApiKey, name)
            if key is None:
                raise NotFound(f"no key named {name!r}; `memchat key list` shows them")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                session.add(key)
                session.flush()
            return ApiKeyPublic.model_validate(key)

    def key_holder(self, key_hash: str) -> KeyCheck:
        """The live key with this hash, and whether any key is live or was ever made: what a
        server checks on every request, in one query."""
        with self._core_reading() as connection:
            every = connection.execute(_EVERY_KEY).all()
        live = [(name, stored) for name, stored, revoked_at in every if revoked_at is None]
        holder = None
        for name, stored in live:
            if hmac.compare_digest(stored, key_hash):
                holder = name
        return KeyCheck(holder, any_live=bool(live), ever_made=bool(every))

    def acquire_lease(
        self,
        thread_id: str,
        holder: str,
        seconds: float,
        is_gone: Callable[[str], bool],
        *,
        renewing: bool = False,
    ) -> bool:
        """Take the thread's lease for `seconds`, unless another live holder has it; with
        `renewing`, only extend it, and fail if anyone else has held it since."""
        with self._writing() as session:
            return self._take_lease(session, thread_id, holder, seconds, is_gone, renewing=renewing)

    def begin_turn(
        self,
        thread_id: str,
        holder: str,
        seconds: float,
        is_gone: Callable[[str], bool],
        *,
        seen: int,
        message: MessageCreate | None = None,
        resend: int | None = None,
        tokens: tuple[str, int] | None = None,
    ) -> MessagePublic | None:
        """A turn's first commit: take the lease and store the user's message (`message`, or
        message `resend` marked pending again) together, if the thread is still as the turn's
        context saw it (`seen`, its `history_version`). None: another turn holds the lease.
        HistoryMoved: the history changed since; build the context again."""
        with self._writing() as session:
            if not self._take_lease(session, thread_id, holder, seconds, is_gone):
                return None
            if session.execute(_LOCKED_HISTORY_VERSION, {"thread_key": thread_id}).scalar() != seen:
                raise HistoryMoved(thread_id)
            if resend is not None:
                again = self._own_message(session, thread_id, resend)
                again.status = "pending"
                session.add(again)
                session.flush()
                stored = MessagePublic.model_validate(again)
                now = session.execute(_HISTORY_VERSION, {"thread_key": thread_id}).scalar_one()
            else:
                stored = self._append(session, thread_id, message, tokens)
                now = session.info["history_version"]
        self._recent.advance(thread_id, seen=seen, now=now, changed_from=stored.position)
        return stored

    def history_version(self, thread_id: str) -> int:
        """What a turn's context depends on, in one read by primary key: raised by every append
        and every status change of the thread's messages (revision 0009)."""
        with self._core_reading() as connection:
            version = connection.execute(_HISTORY_VERSION, {"thread_key": thread_id}).scalar()
        if version is None:
            raise NotFound(f"no thread {thread_id!r}")
        return version

    @staticmethod
    def _take_lease(
        session: Session, thread_id: str, holder: str, seconds: float, is_gone: Callable[[str], bool], *, renewing: bool = False
    ) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=seconds)
        if not renewing:
            # One statement, atomic on both backends (two processes that both find no lease
            # cannot both take it): the lease inserted where there is none (the last turn deleted
            # it), or taken over from ourselves; a row another holder has is left, locked, for
            # the checks below.
            taken = session.execute(
                _lease_taking(Store._dialect(session)),
                {"thread_id": thread_id, "holder": holder, "expires_at": until},
            )
            if taken.rowcount == 1:
                return True
        lease = session.execute(_LOCKED_LEASE, {"thread_key": thread_id}).first()
        if lease is None:
            # Gone: renewing, the turn has lost it; taking, its holder's release committed in
            # between (PostgreSQL), and the caller tries again.
            return False
        if renewing and lease.holder != holder:
            return False
        if lease.holder not in ("", holder) and as_utc(lease.expires_at) > now and not is_gone(lease.holder):
            return False
        session.execute(_SET_LEASE, {"thread_key": thread_id, "new_holder": holder, "until": until})
        return True

    def live_lease_holder(self, thread_id: str) -> str | None:
        """Who holds the thread's turn lease now, if anyone (a turn is in progress)."""
        with self._core_reading() as connection:
            lease = connection.execute(_LEASE_HOLDER, {"thread_key": thread_id}).first()
        if lease is None or not lease.holder or as_utc(lease.expires_at) <= utcnow():
            return None
        return lease.holder

    def release_lease(self, thread_id: str, holder: str) -> None:
        with self._writing() as session:
            session.execute(_RELEASE_LEASE, {"thread_key": thread_id, "old_holder": holder})

    def import_threads(
        self,
        records: Sequence[ThreadRecord],
        counts: Sequence[tuple[str, Callable[[], list[int]]]],
        *,
        importer: str,
        is_gone: Callable[[str], bool],
    ) -> ImportResult:
        """Create every thread or none, through the database's bulk insert paths, in short
        transactions so that other writers keep going (SQLite has one write lock).

        The threads are written hidden (`import_holder` set: no listing, lookup or search finds
        them) and shown together by the last transaction; a failure removes them, and threads
        left hidden by an import that died are removed by the next import. `counts[i]` is the
        tokenizer and a function giving the token count of each message of `records[i]`; it is
        called once that thread's messages are written, so the counting can run meanwhile.
        A record whose `source` an earlier import of this tenant brought in is not written: the
        import is idempotent (`ImportResult.existing` says which thread holds it).
        """
        self._discard_abandoned_imports(is_gone)
        marker = f"{int(time.time())} {importer}"
        ids: list[str] = []
        unlinked: list[tuple[str, str]] = []
        sources = [record.source for record in records if record.source is not None]
        if len(set(sources)) < len(sources):
            twice = next(source for source in sources if sources.count(source) > 1)
            raise InvalidInput(f"import: two threads come from the same source {twice!r}")
        try:
            with self._writing() as session:
                made = self._sourced(session, sources)
                existing = [(record.source, made[record.source]) for record in records if record.source in made]
                kept = [(record, count) for record, count in zip(records, counts, strict=True) if record.source not in made]
                records, counts = [record for record, _ in kept], [count for _, count in kept]
                origins = self._seen_here(session, {record.forked_from for record in records if record.forked_from})
                for record in records:
                    linked = record.forked_from in origins
                    thread = Thread.model_validate(
                        record.thread,
                        update={
                            "tenant": self.tenant,
                            "forked_from": record.forked_from if linked else None,
                            "forked_at": record.forked_at if linked else None,
                            "source": record.source,
                        },
                    )
                    thread.created_at = record.created_at or thread.created_at
                    thread.updated_at = record.updated_at or thread.created_at
                    thread.import_holder = marker
                    session.add(thread)
                    session.flush()
                    ids.append(thread.id)
                    if record.forked_from and not linked and record.forked_from_source is None:
                        unlinked.append((thread.id, record.forked_from))
                    if record.source is not None:
                        made[record.source] = thread.id
                for thread_id, record in zip(ids, records, strict=True):
                    if record.forked_from_source is not None:
                        origin = made.get(record.forked_from_source)
                        session.exec(
                            update(Thread)
                            .where(col(Thread.id) == thread_id)
                            .values(forked_from=origin, forked_at=record.forked_at if origin else None)
                        )
            for thread_id, record, (tokenizer, message_counts) in zip(ids, records, counts, strict=True):
                self._import_messages(thread_id, record, tokenizer, message_counts)
            with self._writing() as session:
                session.exec(update(Thread).where(col(Thread.id).in_(ids)).values(import_holder=None))
        except BaseException:
            self._discard_hidden(ids)
            raise
        return ImportResult(ids, existing, unlinked)

    def _seen_here(self, session: Session, thread_ids: set[str]) -> set[str]:
        """Of these thread ids (whole ids, not prefixes), those this store's tenant may see: an
        import names the thread it was forked from, and that link is kept only if it leads to
        one the importer could read itself."""
        wanted, found = sorted(thread_ids), set()
        for start in range(0, len(wanted), 500):
            query = self._visible(
                select(Thread.id).where(col(Thread.id).in_(wanted[start : start + 500]), col(Thread.import_holder).is_(None))
            )
            found.update(session.exec(query).all())
        return found

    def _sourced(self, session: Session, sources: Sequence[str]) -> dict[str, str]:
        """The threads of this tenant that earlier imports brought from these sources, by source;
        one that another import is writing right now is refused (the unique index would be)."""
        found: dict[str, str] = {}
        for start in range(0, len(sources), 500):
            query = select(Thread.source, Thread.id, Thread.import_holder).where(
                col(Thread.source).in_(sources[start : start + 500]),
                col(Thread.tenant).is_(None) if self.tenant is None else Thread.tenant == self.tenant,
            )
            for source, thread_id, holder in session.exec(query).all():
                if holder is not None:
                    raise InvalidInput(f"import: another import of {source!r} is under way; try again once it ends")
                found[source] = thread_id
        return found

    def _import_messages(
        self, thread_id: str, record: ThreadRecord, tokenizer: str, message_counts: Callable[[], list[int]]
    ) -> None:
        default_time = record.created_at or utcnow()
        rows = [
            {**row, "thread_id": thread_id, "position": position, "created_at": row.get("created_at") or default_time}
            for position, row in enumerate(record.messages)
        ]
        for start in range(0, len(rows), IMPORT_CHUNK):
            with self._writing() as session:
                session.connection().execute(insert(Message.__table__), rows[start : start + IMPORT_CHUNK])
            time.sleep(IMPORT_PAUSE_SECONDS)
        if rows:
            token_counts = message_counts()
            for start in range(0, len(rows), IMPORT_CHUNK):
                with self._writing() as session:
                    connection = session.connection()
                    inserted = connection.execute(
                        select(Message.id)
                        .where(
                            Message.thread_id == thread_id,
                            Message.position >= start,
                            Message.position < start + IMPORT_CHUNK,
                        )
                        .order_by(col(Message.position))
                    ).scalars().all()
                    connection.execute(
                        insert(MessageTokens.__table__),
                        [
                            {"message_id": message_id, "tokenizer": tokenizer, "tokens": tokens}
                            for message_id, tokens in zip(inserted, token_counts[start : start + IMPORT_CHUNK], strict=True)
                        ],
                    )
                time.sleep(IMPORT_PAUSE_SECONDS)
        if record.summaries:
            with self._writing() as session:
                for summary in record.summaries:
                    session.add(
                        Summary.model_validate(
                            summary, update={"thread_id": thread_id, "created_at": summary.created_at or default_time}
                        )
                    )

    def _discard_hidden(self, thread_ids: Sequence[str]) -> None:
        """Remove threads an import left hidden, a bounded transaction a thread."""
        for thread_id in thread_ids:
            with self._writing() as session:
                thread = session.get(Thread, thread_id)
                if thread is not None and thread.import_holder is not None:
                    self._delete(session, thread)

    def _discard_abandoned_imports(self, is_gone: Callable[[str], bool]) -> None:
        """Threads left hidden by an import whose process is gone, or that began over a day ago."""
        with self._reading() as session:
            hidden = session.exec(select(Thread.id, Thread.import_holder).where(col(Thread.import_holder).is_not(None))).all()
        now = time.time()
        abandoned = []
        for thread_id, marker in hidden:
            started, _, holder = marker.partition(" ")
            if is_gone(holder) or not started.isdigit() or now - int(started) > ABANDONED_IMPORT_SECONDS:
                abandoned.append(thread_id)
        self._discard_hidden(abandoned)

    def export_rows(self, thread_id: str) -> Iterator[tuple[MessagePublic, dict[str, int]]]:
        """Every message of a thread with its token counts, read a page at a time so that a long
        thread is never held in memory whole."""
        after = -1
        query = (
            _thread_messages(first=_position("after_position", 1))
            .order_by(_messages.c.position)
            .limit(bindparam("page"))
        )
        while True:
            with self._reading() as session:
                page = self._across(
                    session, thread_id, query, {"after_position": after}, oldest_first=True, limit=EXPORT_PAGE, limit_key="page"
                )
                if not page:
                    return
                counts: dict[int, dict[str, int]] = {}
                counted = {m.id for m in page} | {m.copied_from for m in page if m.copied_from is not None}
                token_rows = session.exec(
                    select(MessageTokens.message_id, MessageTokens.tokenizer, MessageTokens.tokens).where(
                        col(MessageTokens.message_id).in_(counted)
                    )
                ).all()
                for message_id, tokenizer, tokens in token_rows:
                    counts.setdefault(message_id, {})[tokenizer] = tokens
                # a fork's copy: its original's counts, and its own where it was counted since
                rows = [(_message_of(m, thread_id), {**counts.get(m.copied_from, {}), **counts.get(m.id, {})}) for m in page]
            yield from rows
            after = rows[-1][0].position

    # internals

    def _append(
        self, session: Session, thread: Thread | str, message: MessageCreate, tokens: tuple[str, int] | None
    ) -> MessagePublic:
        """The message stored after the thread's last, the thread's `updated_at` moved with it
        (on a loaded `thread` too, which is not written again for it)."""
        thread_id = thread if isinstance(thread, str) else thread.id
        last = session.execute(_LAST_POSITION, {"thread_key": thread_id}).scalar()
        now = utcnow()
        values = message.model_dump(exclude={"created_at"})
        values.update(thread_id=thread_id, position=_count_from_last(last), created_at=message.created_at or now)
        message_id = session.execute(_INSERT_MESSAGE, values).scalar_one()
        session.info["history_version"] = session.execute(_TOUCH_THREAD, {"thread_key": thread_id, "now": now}).scalar_one()
        if not isinstance(thread, str):
            set_committed_value(thread, "updated_at", now)
        if tokens is not None:
            session.execute(_INSERT_TOKENS, {"message_id": message_id, "tokenizer": tokens[0], "tokens": tokens[1]})
        return MessagePublic(id=message_id, **values)

    def _lineage(self, connection: Session | Connection, thread_id: str) -> tuple[Segment, ...]:
        """Where the thread's history is stored, newest positions first: its own messages, then
        what each origin gives it (revision 0012). One read by primary key a fork level, kept
        for the rest of a snapshot; a thread known never to have inherited (no fork) costs no
        read. A fork that has come to own all it reads is not known so: a snapshot begun before
        its origin's delete still sees it inherit, and must read the origin's rows."""
        if thread_id in self._unforked:
            return ((thread_id, 0, LAST_POSSIBLE_POSITION),)
        kept = self._shared.info.setdefault("lineages", {}) if connection is self._shared else None
        if kept is not None and thread_id in kept:
            return kept[thread_id]
        step = connection.execute(_LINEAGE_STEP, {"thread_key": thread_id}).first()
        if step is not None and step.inherits_through is None and step.forked_from is None:
            if len(self._unforked) >= UNFORKED_KEPT:
                self._unforked.clear()
            self._unforked[thread_id] = None
        lineage = self._segments(connection, thread_id, step)
        if kept is not None:
            kept[thread_id] = lineage
        return lineage

    @staticmethod
    def _segments(connection: Session | Connection, thread_id: str, step) -> tuple[Segment, ...]:
        """The lineage from the thread's own `_LINEAGE_STEP` row, walking up its origins."""
        if step is None or step.inherits_through is None:
            return ((thread_id, 0, LAST_POSSIBLE_POSITION),)
        segments = [(thread_id, step.inherits_through + 1, LAST_POSSIBLE_POSITION)]
        bound, origin = step.inherits_through, step.forked_from
        while bound >= 0 and origin is not None:
            step = connection.execute(_LINEAGE_STEP, {"thread_key": origin}).first()
            if step is None:
                raise StorageError(f"thread {thread_id} inherits messages from {origin}, which is gone")
            first = 0 if step.inherits_through is None else step.inherits_through + 1
            if first <= bound:
                segments.append((origin, first, bound))
            if step.inherits_through is None:
                break
            bound, origin = min(bound, step.inherits_through), step.forked_from
        return tuple(segments)

    def _across(
        self,
        connection: Session | Connection,
        thread_id: str,
        statement,
        values: dict[str, Any],
        *,
        oldest_first: bool = False,
        limit: int | None = None,
        limit_key: str | None = None,
    ) -> list:
        """`statement` (over one segment: `thread_key`, `seg_first`, `seg_last`) run over the
        thread's lineage, newest positions first (or oldest first), until `limit` rows are found
        (`limit_key`: the statement's own limit, given what is still wanted). Segments hold
        disjoint runs of positions, so rows come in the statement's order."""
        lineage = self._lineage(connection, thread_id)
        rows: list = []
        for segment_thread, first, last in reversed(lineage) if oldest_first else lineage:
            params = {**values, "thread_key": segment_thread, "seg_first": first, "seg_last": last}
            if limit_key is not None:
                params[limit_key] = limit - len(rows)
            rows += connection.execute(statement, params).all()
            if limit is not None and len(rows) >= limit:
                break
        return rows

    def _before_change(self, session: Session, thread_id: str, position: int) -> None:
        """The thread's messages from `position` on are about to change (a status): the forks that
        read them copy them first, and so does the thread where it inherits them, so that only
        the thread's own rows change (copy on write)."""
        self._forks_take_theirs(session, thread_id, position)
        self._own_from(session, thread_id, position)

    def _forks_take_theirs(self, session: Session, thread_id: str, position: int) -> None:
        """Every fork reading the thread's messages from `position` on copies them into itself."""
        for (fork,) in session.execute(_INHERITING, {"thread_key": thread_id, "from_position": position}).all():
            self._own_from(session, fork, position)

    def _own_from(self, session: Session, thread_id: str, position: int) -> None:
        """What the thread inherits from `position` on, copied into it (rows in SQL, sharing their
        originals' token counts and index entries as fork copies did, revision 0010)."""
        step = session.execute(_LOCKED_LINEAGE_STEP, {"thread_key": thread_id}).first()
        if step is None or step.inherits_through is None or position > step.inherits_through:
            return
        for origin, first, last in self._segments(session, thread_id, step)[1:]:
            if last >= position:
                copied = {"old_thread": origin, "new_thread": thread_id, "first": max(first, position), "through": last}
                session.execute(_COPY_MESSAGES, copied)
        session.execute(_INHERIT_LESS, {"thread_key": thread_id, "through": position - 1 if position > 0 else None})

    def _own_row_at(self, session: Session, thread_id: str, position: int) -> Message:
        """The thread's own row at `position` (`_before_change` makes an inherited one its own)."""
        message = session.exec(select(Message).where(Message.thread_id == thread_id, Message.position == position)).first()
        if message is None:
            raise NotFound(f"thread {thread_id} has no message #{position}")
        return message

    @staticmethod
    def _check_lease(session: Session, thread_id: str, holder: str | None) -> None:
        if holder is None:
            return
        lease = session.execute(_LOCKED_LEASE, {"thread_key": thread_id}).first()
        if lease is None or lease.holder != holder:
            raise LeaseLost(thread_id)

    def _resolve(self, session: Session, ref: str) -> Thread:
        """An id, or an unambiguous prefix of one, as git accepts for commits."""
        ref = _checked_ref(ref)
        thread = session.get(Thread, ref)
        if thread is not None and thread.import_holder is None and self.tenant in (None, thread.tenant):
            return thread
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = session.exec(
            self._visible(
                select(Thread)
                .where(col(Thread.id).like(escaped + "%", escape="\\"), col(Thread.import_holder).is_(None))
                .order_by(col(Thread.id))
                .limit(AMBIGUOUS_SHOWN + 1)
            )
        ).all()
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(thread.id for thread in matches[:AMBIGUOUS_SHOWN])
            more = ", …" if len(matches) > AMBIGUOUS_SHOWN else ""
            raise InvalidInput(f"thread id {ref!r} is ambiguous: it starts {shown}{more}; give more characters")
        raise NotFound(f"no thread {ref!r}; `memchat list` shows the threads")

    def _own_message(self, session: Session, thread_id: str, message_id: int) -> Message:
        """A message of the thread by id, about to change: one it inherits (whose id is its
        origin's) is made its own first, and the forks that read it take their copies."""
        message = session.get(Message, message_id)
        if message is None or not any(
            segment == message.thread_id and first <= message.position <= last
            for segment, first, last in self._lineage(session, thread_id)
        ):
            raise NotFound(f"no message {message_id} in thread {thread_id}")
        self._before_change(session, thread_id, message.position)
        return self._own_row_at(session, thread_id, message.position)

    def _public(self, session: Session, thread: Thread) -> ThreadPublic:
        last = session.execute(_LAST_POSITION, {"thread_key": thread.id}).scalar()
        return ThreadPublic.model_validate(thread, update={"message_count": _count_from_last(last)})

    @staticmethod
    def _dialect(session: Session | Connection) -> str:
        return (session.dialect if isinstance(session, Connection) else session.get_bind().dialect).name

    def _reading(self):
        if self._shared is not None:
            return nullcontext(self._shared)
        return _Transaction(self, commit=False)

    @contextmanager
    def _core_reading(self) -> Iterator[Session | Connection]:
        """For reads made of Core statements alone (a turn's and a request's own): a plain
        connection, a third of an ORM session's cost, or the snapshot's session inside one."""
        if self._shared is not None:
            yield self._shared
            return
        self.prepare()
        try:
            with self._read_engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {database._reason(exc)}") from None

    def _writing(self):
        return _Transaction(self, commit=True)


def _checked_ref(ref: str) -> str:
    ref = ref.strip()
    if not ref:
        raise InvalidInput("empty thread id")
    try:
        return check_text(ref)
    except ValueError as exc:
        raise InvalidInput(f"the thread id {exc}") from None


def _message_of(row, thread_id: str) -> MessagePublic:
    """A message row as part of `thread_id`, which may be a fork that inherits it (revision 0012)."""
    return MessagePublic.model_validate({**row._mapping, "thread_id": thread_id})


def _count_from_last(last_position: int | None) -> int:
    """Positions run 0, 1, 2… without gaps (messages are only appended), so the count and the
    next position both follow from the last one, read from the index."""
    return 0 if last_position is None else last_position + 1


def _insert_ignoring_duplicates(session: Session, table):
    return _ignoring_duplicates(session.get_bind().dialect.name, table)


def _dialect_insert(dialect: str, table):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        raise StorageError(f"memchat does not support {dialect} databases")
    return dialect_insert(table)


@cache
def _ignoring_duplicates(dialect: str, table):
    return _dialect_insert(dialect, table).on_conflict_do_nothing()


@cache
def _lease_taking(dialect: str):
    """The lease inserted, or taken over from the same holder or from an empty one (the
    placeholder rows earlier versions left); a row held by anyone else is left as it is (no row
    changed: the caller looks closer)."""
    statement = _dialect_insert(dialect, _leases)
    return statement.on_conflict_do_update(
        index_elements=[_leases.c.thread_id],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=_leases.c.holder.in_(["", statement.excluded.holder]),
    )


class _Transaction:
    """A session that commits on success, rolls back on any error, and reports database
    failures as StorageError instead of SQLAlchemy tracebacks. A write on SQLite first waits its
    turn among this process's writers (database.WriterQueue)."""

    def __init__(self, store: Store, *, commit: bool):
        self._store = store
        self._commit = commit

    def __enter__(self) -> Session:
        writers = self._store._writers if self._commit else None
        self._queued = writers.turn(database.db_timeout()) if writers is not None else nullcontext()
        self._queued.__enter__()
        try:
            self._session = self._store._session(write=self._commit)
        except SQLAlchemyError as exc:
            self._queued.__exit__(None, None, None)
            raise StorageError(f"cannot open database: {database._reason(exc)}") from None
        return self._session

    def __exit__(self, exc_type, exc, tb):
        try:
            return self._finish(exc_type, exc)
        finally:
            self._queued.__exit__(None, None, None)

    def _finish(self, exc_type, exc):
        session = self._session
        try:
            if exc_type is None and self._commit:
                session.commit()
            else:
                session.rollback()
        except SQLAlchemyError as error:
            session.rollback()
            raise StorageError(f"database write failed: {database._reason(error)}") from None
        finally:
            session.close()
        if isinstance(exc, SQLAlchemyError):
            raise StorageError(f"database error: {database._reason(exc)}") from None
        return False
