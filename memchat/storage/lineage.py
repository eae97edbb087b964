"""Fork lineage: where a thread's history is stored (its own rows, then what each origin
gives it, revision 0012), statements run across that lineage, and copy on write (a message a
fork reads is copied into it before it changes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, String, bindparam, insert, update
from sqlalchemy import select as select_columns
from sqlmodel import Session, select

from memchat.errors import NotFound, StorageError
from memchat.storage.core import StoreCore
from memchat.storage.models import Message
from memchat.storage.statements import (
    HELD_UNDER,
    LAST_POSSIBLE_POSITION,
    LINEAGE_STEP,
    Segment,
    messages_table,
    threads_table,
)

_LOCKED_LINEAGE_STEP = LINEAGE_STEP.with_for_update()
"""A fork's row held while what it inherits is copied into it: two writers copying into the same
fork one after the other, the second sees what the first took (PostgreSQL; SQLite writers take
turns anyway)."""
_INHERITING = select_columns(threads_table.c.id).where(
    threads_table.c.forked_from == bindparam("thread_key"),
    threads_table.c.inherits_through >= bindparam("from_position"),
)
_INHERIT_LESS = (
    update(threads_table)
    .where(threads_table.c.id == bindparam("thread_key"))
    .values(inherits_through=bindparam("through"), history_version=threads_table.c.history_version + 1)
)
_MESSAGE_COPIED = [c.name for c in messages_table.c if c.name not in ("id", "thread_id", "copied_from")]
_COPY_MESSAGES = insert(messages_table).from_select(
    ["thread_id", *_MESSAGE_COPIED, "copied_from"],
    select_columns(
        bindparam("new_thread", type_=String).label("thread_id"),
        *(messages_table.c[name] for name in _MESSAGE_COPIED),
        # the indexed original: a copy is found through its entry, never indexed again (0010)
        HELD_UNDER,
    ).where(
        messages_table.c.thread_id == bindparam("old_thread"),
        messages_table.c.position >= bindparam("first"),
        messages_table.c.position <= bindparam("through"),
    ),
)
"""What a fork inherits from one thread of its lineage, from position `first` on, made its own
(a copy on write)."""


class Lineage(StoreCore):
    """Reads across a fork's lineage, and the copies made before a message it shares changes."""

    def _lineage(self, connection: Session | Connection, thread_id: str) -> tuple[Segment, ...]:
        """Where the thread's history is stored, newest positions first: its own messages, then
        what each origin gives it (revision 0012). One read by primary key a fork level, kept
        for the rest of a snapshot; a thread known never to have inherited (no fork) costs no
        read. A fork that has come to own all it reads is not known so: a snapshot begun before
        its origin's delete still sees it inherit, and must read the origin's rows."""
        if thread_id in self.caches.unforked:
            return ((thread_id, 0, LAST_POSSIBLE_POSITION),)
        kept = self._shared.info.setdefault("lineages", {}) if connection is self._shared else None
        if kept is not None and thread_id in kept:
            return kept[thread_id]
        step = connection.execute(LINEAGE_STEP, {"thread_key": thread_id}).first()
        if step is not None and step.inherits_through is None and step.forked_from is None:
            self.caches.unforked.add(thread_id)
        lineage = self._segments(connection, thread_id, step)
        if kept is not None:
            kept[thread_id] = lineage
        return lineage

    @staticmethod
    def _segments(connection: Session | Connection, thread_id: str, step) -> tuple[Segment, ...]:
        """The lineage from the thread's own `LINEAGE_STEP` row, walking up its origins."""
        if step is None or step.inherits_through is None:
            return ((thread_id, 0, LAST_POSSIBLE_POSITION),)
        segments = [(thread_id, step.inherits_through + 1, LAST_POSSIBLE_POSITION)]
        bound, origin = step.inherits_through, step.forked_from
        while bound >= 0 and origin is not None:
            step = connection.execute(LINEAGE_STEP, {"thread_key": origin}).first()
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
        message = session.exec(
            select(Message).where(Message.thread_id == thread_id, Message.position == position)
        ).first()
        if message is None:
            raise NotFound(f"thread {thread_id} has no message #{position}")
        return message

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
