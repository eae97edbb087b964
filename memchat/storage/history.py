"""What a turn reads to fit its context: completed messages newest first with their token
counts, from this process's copy of a thread's recent history where it is exact, and the counts a
turn makes, kept."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import bindparam, func, literal_column, text
from sqlalchemy import select as select_columns
from sqlalchemy.exc import IntegrityError, OperationalError

from memchat.storage.lineage import Lineage
from memchat.storage.models import MessageTokens
from memchat.storage.recent import HistoryRow, RecentHistory
from memchat.storage.statements import (
    IN_SEGMENT,
    in_segment,
    insert_ignoring_duplicates,
    messages_table,
    position_param,
)

COUNTS_LOCK_WAIT_MS = 100
"""How long saving token counts (a cache) waits for a lock on PostgreSQL: under its deadlock check."""
LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock wait past `lock_timeout`."""
_tokens = MessageTokens.__table__
_shared_tokens = _tokens.alias("shared_tokens")
_COUNTED = func.coalesce(_tokens.c.tokens, _shared_tokens.c.tokens).label("tokens")
"""A message's token count: its own, else (a fork's copy) its original's, which a fork does not
copy: the same text counts the same."""
_RICH = messages_table.c.parts.isnot(None).label("rich")
"""Whether a message is more than its text (parts: images, files): it is sent as its parts."""


def _with_counts(query):
    return query.outerjoin(
        _tokens, (_tokens.c.message_id == messages_table.c.id) & (_tokens.c.tokenizer == bindparam("tokenizer_name"))
    ).outerjoin(
        _shared_tokens,
        (_shared_tokens.c.message_id == messages_table.c.copied_from)
        & (_shared_tokens.c.tokenizer == bindparam("tokenizer_name")),
    )


def _history_page(segment):
    return (
        _with_counts(
            select_columns(
                messages_table.c.id,
                messages_table.c.position,
                messages_table.c.role,
                _COUNTED,
                messages_table.c.context_limit,
                messages_table.c.kind,
                _RICH,
            )
        )
        .where(
            messages_table.c.thread_id == bindparam("thread_key"),
            segment,
            messages_table.c.status == literal_column("'complete'"),
        )
        .order_by(messages_table.c.position.desc())
        .limit(bindparam("page"))
    )


_HISTORY_PAGE = _history_page(IN_SEGMENT)
_HISTORY_PAGE_BEFORE = _history_page(in_segment(last=position_param("before_position", -1)))
_HISTORY_TAIL = (
    _with_counts(
        select_columns(
            messages_table.c.id,
            messages_table.c.position,
            messages_table.c.role,
            _COUNTED,
            messages_table.c.context_limit,
            messages_table.c.kind,
            _RICH,
            messages_table.c.status,
            messages_table.c.content,
        )
    )
    .where(messages_table.c.thread_id == bindparam("thread_key"), in_segment(first=position_param("after_position", 1)))
    .order_by(messages_table.c.position.desc())
)
_CONTENTS_FROM = select_columns(messages_table.c.id, messages_table.c.content).where(
    messages_table.c.thread_id == bindparam("thread_key"),
    in_segment(first=position_param("first_position")),
    messages_table.c.status == literal_column("'complete'"),
)


class History(Lineage):
    """A turn's reads of the history it fits into its context, and the token counts it keeps."""

    def history_page(
        self, thread_id: str, tokenizer: str, *, before: int | None, limit: int, version: int | None = None
    ) -> list[HistoryRow]:
        """Up to `limit` completed messages older than position `before`, newest first.

        With the thread's `version` (`history_version`, read in the same snapshot before), pages
        come from this process's copy of the thread's recent history where it is exact, and
        what is read from the database is kept in it."""
        if version is None:
            return self._read_page(thread_id, tokenizer, before, limit)
        copy = self.caches.recent.get(thread_id, tokenizer, version)
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
            self.caches.recent.put(thread_id, tokenizer, copy, keep=4 * limit)
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
        self.caches.recent.put(thread_id, tokenizer, copy, keep=4 * limit)
        return copy.older_than(before, limit)

    def _read_page(self, thread_id: str, tokenizer: str, before: int | None, limit: int) -> list[HistoryRow]:
        query = _HISTORY_PAGE if before is None else _HISTORY_PAGE_BEFORE
        values = {"tokenizer_name": tokenizer, "before_position": before}
        with self._core_reading() as connection:
            return [
                HistoryRow(*row)
                for row in self._across(connection, thread_id, query, values, limit=limit, limit_key="page")
            ]

    def _with_tail(self, thread_id: str, tokenizer: str, copy: RecentHistory) -> RecentHistory:
        """The copy with the messages a turn's commits added after it (`RecentHistories.advance`)."""
        values = {"tokenizer_name": tokenizer, "after_position": copy.through}
        with self._core_reading() as connection:
            tail = self._across(connection, thread_id, _HISTORY_TAIL, values)
        done = [row for row in tail if row.status == "complete"]
        return replace(
            copy,
            through=tail[0].position if tail else copy.through,
            rows=tuple(HistoryRow(*row[:7]) for row in done) + copy.rows,
            contents={**copy.contents, **{row.id: row.content for row in done}},
            stale_tail=False,
        )

    def contents_from(
        self, thread_id: str, position: int, *, tokenizer: str | None = None, version: int | None = None
    ) -> dict[int, str]:
        """The contents of the thread's completed messages from `position` on, by id: a turn's
        window is such a run, read over the (thread, position) index (or, at `version`, from
        this process's copy of the thread's recent history, which keeps what is read here)."""
        copy = self.caches.recent.get(thread_id, tokenizer, version) if tokenizer and version is not None else None
        held = copy.contents_from(position) if copy is not None else None
        if held is not None:
            return held
        with self._core_reading() as connection:
            found = dict(self._across(connection, thread_id, _CONTENTS_FROM, {"first_position": position}))
        if copy is not None:
            self.caches.recent.read(thread_id, tokenizer, version, found)
        return found

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
            insert_counts = insert_ignoring_duplicates(session, MessageTokens)
            try:
                try:
                    with session.begin_nested():
                        session.execute(insert_counts, rows)
                except IntegrityError:
                    existing = select_columns(messages_table.c.id).where(messages_table.c.id.in_(list(counts)))
                    kept = set(session.execute(existing).scalars())
                    if kept:
                        with session.begin_nested():
                            session.execute(insert_counts, [row for row in rows if row["message_id"] in kept])
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
        if thread_id is not None:
            self.caches.recent.counted(thread_id, tokenizer, counts)
