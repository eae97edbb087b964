"""Import and export: whole threads written through the database's bulk paths in short
transactions, and a thread read back a page at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from memchat.errors import InvalidInput
from memchat.records import MessagePublic, SummaryCreate, ThreadCreate
from memchat.results import ImportResult
from memchat.storage.models import Blob, Message, MessageTokens, Summary, Thread
from memchat.storage.statements import (
    insert_ignoring_duplicates,
    message_of,
    messages_table,
    position_param,
    thread_messages,
)
from memchat.storage.threads import Threads
from memchat.times import utcnow

EXPORT_PAGE = 2000
IMPORT_CHUNK = 2000
"""Messages an import writes per transaction: each holds SQLite's write lock for tens of ms."""
IMPORT_PAUSE_SECONDS = 0.005
"""Between an import's transactions, so a writer waiting on SQLite's busy handler gets the lock."""
ABANDONED_IMPORT_SECONDS = 24 * 3600


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
    blobs: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)
    """The media type and bytes of each blob the messages' parts refer to, by SHA-256."""


def _plain(row: Mapping[str, Any]) -> bool:
    """A message of text alone, whose count of `content` is what a context sends; the other items
    (calls, outputs, reasoning, parts) are counted as a turn counts them, when first read."""
    return row.get("kind", "message") == "message" and row.get("parts") is None


class Bulk(Threads):
    """Threads written whole by an import (all or none), and read back whole by an export."""

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
                kept = [
                    (record, count) for record, count in zip(records, counts, strict=True) if record.source not in made
                ]
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
                select(Thread.id).where(
                    col(Thread.id).in_(wanted[start : start + 500]), col(Thread.import_holder).is_(None)
                )
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
        if record.blobs:
            self._import_blobs(record.blobs)
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
                    inserted = (
                        connection.execute(
                            select(Message.id)
                            .where(
                                Message.thread_id == thread_id,
                                Message.position >= start,
                                Message.position < start + IMPORT_CHUNK,
                            )
                            .order_by(col(Message.position))
                        )
                        .scalars()
                        .all()
                    )
                    counted = [
                        {"message_id": message_id, "tokenizer": tokenizer, "tokens": tokens}
                        for message_id, tokens, row in zip(
                            inserted,
                            token_counts[start : start + IMPORT_CHUNK],
                            rows[start : start + IMPORT_CHUNK],
                            strict=True,
                        )
                        if _plain(row)
                    ]
                    if counted:
                        connection.execute(insert(MessageTokens.__table__), counted)
                time.sleep(IMPORT_PAUSE_SECONDS)
        if record.summaries:
            with self._writing() as session:
                for summary in record.summaries:
                    session.add(
                        Summary.model_validate(
                            summary, update={"thread_id": thread_id, "created_at": summary.created_at or default_time}
                        )
                    )

    def _import_blobs(self, blobs: Mapping[str, tuple[str, bytes]]) -> None:
        """The bytes the messages refer to, a blob a transaction (one may be MiBs); a blob stored
        already (the same content) is kept as it is. A blob written by an import that then fails
        stays, referred to by no message: the same bytes a later import would write again."""
        for sha, (media_type, data) in blobs.items():
            with self._writing() as session:
                session.execute(
                    insert_ignoring_duplicates(session, Blob),
                    [
                        {
                            "sha256": sha,
                            "media_type": media_type,
                            "size": len(data),
                            "data": data,
                            "created_at": utcnow(),
                        }
                    ],
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
            hidden = session.exec(
                select(Thread.id, Thread.import_holder).where(col(Thread.import_holder).is_not(None))
            ).all()
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
            thread_messages(first=position_param("after_position", 1))
            .order_by(messages_table.c.position)
            .limit(bindparam("page"))
        )
        while True:
            with self._reading() as session:
                page = self._across(
                    session,
                    thread_id,
                    query,
                    {"after_position": after},
                    oldest_first=True,
                    limit=EXPORT_PAGE,
                    limit_key="page",
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
                rows = [
                    (message_of(m, thread_id), {**counts.get(m.copied_from, {}), **counts.get(m.id, {})}) for m in page
                ]
            yield from rows
            after = rows[-1][0].position
