"""Threads: making, forking, finding (by id or unambiguous prefix), listing, changing and
deleting them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, bindparam, func, insert, literal_column
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, delete, select

from memchat.errors import NO_THREADS_YET, InvalidInput, NotFound
from memchat.records import MessageCreate, ThreadBase, ThreadCreate, ThreadPublic, ThreadUpdate
from memchat.storage.blobs import blob_hashes_of, drop_unreferenced_blobs
from memchat.storage.core import checked_ref
from memchat.storage.leases import check_lease
from memchat.storage.messages import Messages
from memchat.storage.models import Message, MessageTokens, MessageVector, Summary, Thread, ThreadLease
from memchat.storage.statements import (
    IN_SEGMENT,
    LAST_POSITION,
    NOT_UNDONE,
    count_from_last,
    last_position_of,
    messages_table,
    summaries_table,
    threads_table,
)
from memchat.times import utcnow

_THREAD_WITH_LAST_POSITION = select_columns(
    threads_table, last_position_of(threads_table.c.id, threads_table.c.inherits_through).label("last_position")
).where(threads_table.c.id == bindparam("thread_key"))
_UNFINISHED_IN_SEGMENT = select_columns(func.count()).where(
    messages_table.c.thread_id == bindparam("thread_key"),
    IN_SEGMENT,
    messages_table.c.status != literal_column("'complete'"),  # a literal, as the partial index says
    NOT_UNDONE,
)
_SUMMARY_COPIED = [c.name for c in summaries_table.c if c.name not in ("id", "thread_id")]
_COPY_SUMMARIES = insert(summaries_table).from_select(
    ["thread_id", *_SUMMARY_COPIED],
    select_columns(
        bindparam("new_thread", type_=String).label("thread_id"), *(summaries_table.c[name] for name in _SUMMARY_COPIED)
    )
    .where(
        summaries_table.c.thread_id == bindparam("old_thread"), summaries_table.c.last_position <= bindparam("through")
    )
    .order_by(summaries_table.c.id),
)


class Threads(Messages):
    """Threads as a whole: made (with their first messages), forked, found, listed, changed, deleted."""

    def create_thread(self, data: ThreadCreate, messages: Sequence[MessageCreate] = ()) -> ThreadPublic:
        """A new thread, with its first messages if given, in one transaction."""
        thread = Thread.model_validate(data, update={"tenant": self.tenant})
        with self._writing() as session:
            session.add(thread)
            session.flush()
            for message in messages:
                self._append(session, thread, message, None)
        return ThreadPublic.model_validate(thread).model_copy(update={"message_count": len(messages)})

    def fork_thread(self, thread_id: str, through: int | None, *, lease_holder: str) -> ThreadPublic:
        """A new thread with the settings of `thread_id` and its history up to position
        `through` (None: all; -1: none), in one transaction: the fork reads those messages from
        the original (revision 0012: nothing is copied, counted or indexed again, whatever the
        length) and gets a copy of the summaries whose span lies inside. The original is only
        read (under its turn lease, so no turn is half-taken); a later change to a message a
        fork reads copies it into the fork first (`_before_change`)."""
        with self._writing() as session:
            origin = self._resolve(session, thread_id)
            check_lease(session, origin.id, lease_holder)
            last = session.execute(LAST_POSITION, {"thread_key": origin.id}).scalar()
            last = -1 if last is None else last
            through = last if through is None else through
            if not -1 <= through <= last:
                raise InvalidInput(
                    f"thread {origin.id} has messages #0 to #{last}: fork at one of them, or at -1 for none"
                    if last >= 0
                    else f"thread {origin.id} has no messages: fork it at -1 (its settings alone)"
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
            return ThreadPublic.model_validate(fork).model_copy(update={"message_count": through + 1})

    def thread(self, ref: str) -> ThreadPublic:
        """The thread an id (or an unambiguous prefix of one) names: a whole id, what every turn
        gives, is one Core statement with its message count."""
        ref = checked_ref(ref)
        with self._core_reading() as connection:
            row = connection.execute(_THREAD_WITH_LAST_POSITION, {"thread_key": ref}).first()
        if row is not None and row.import_holder is None and self.tenant in (None, row.tenant):
            fields = row._asdict()
            return ThreadPublic.model_validate(
                {**fields, "message_count": count_from_last(fields.pop("last_position"))}
            )
        with self._reading() as session:
            return self._public(session, self._resolve(session, ref))

    def threads(self, *, last: int | None = None) -> list[ThreadPublic]:
        """Most recent activity first (with `last`, only that many); message counts from each
        thread's last position: one index probe a thread."""
        last_position = last_position_of(threads_table.c.id, threads_table.c.inherits_through)
        query = self._visible(
            select(Thread, last_position)
            .where(col(Thread.import_holder).is_(None))
            .order_by(col(Thread.updated_at).desc(), col(Thread.id))
            .limit(last)
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
                ThreadPublic.model_validate(thread).model_copy(
                    update={"message_count": count_from_last(position), "unfinished_count": counts.get(thread.id, 0)},
                )
                for thread, position in listed
            ]

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
                raise NotFound(NO_THREADS_YET)
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
        held = blob_hashes_of(session, thread.id)
        message_ids = select(Message.id).where(Message.thread_id == thread.id)
        session.exec(delete(MessageTokens).where(col(MessageTokens.message_id).in_(message_ids)))
        session.exec(delete(MessageVector).where(col(MessageVector.message_id).in_(message_ids)))
        session.exec(delete(ThreadLease).where(col(ThreadLease.thread_id) == thread.id))
        session.exec(delete(Summary).where(col(Summary.thread_id) == thread.id))
        session.exec(delete(Message).where(col(Message.thread_id) == thread.id))
        session.delete(thread)
        drop_unreferenced_blobs(session, held)
