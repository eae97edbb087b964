"""A thread's messages and summaries: appending, and the readers callers ask for by question
(the transcript, one message, a page of the conversation, what a summary folds, contents by id)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, insert, literal_column, update
from sqlalchemy import select as select_columns
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from memchat.errors import NotFound
from memchat.records import MessageCreate, MessagePublic, SummaryCreate, SummaryPublic
from memchat.storage.blobs import stored_parts
from memchat.storage.leases import check_lease
from memchat.storage.lineage import Lineage
from memchat.storage.models import Message, MessageTokens, Summary, Thread
from memchat.storage.statements import (
    IN_SEGMENT,
    LAST_POSITION,
    NOT_UNDONE,
    THREAD_MESSAGES,
    count_from_last,
    message_of,
    messages_table,
    position_param,
    thread_messages,
    threads_table,
)
from memchat.times import utcnow

_INSERT_MESSAGE = insert(messages_table).returning(messages_table.c.id)
_INSERT_TOKENS = insert(MessageTokens.__table__)
_TOUCH_THREAD = (
    update(threads_table)
    .where(threads_table.c.id == bindparam("thread_key"))
    .values(updated_at=bindparam("now"), history_version=threads_table.c.history_version + 1)
    .returning(threads_table.c.history_version)
)
_USER_MESSAGE_BEFORE = (
    select_columns(messages_table.c.position)
    .where(
        messages_table.c.thread_id == bindparam("thread_key"),
        IN_SEGMENT,
        messages_table.c.role == literal_column("'user'"),
        messages_table.c.position < bindparam("before"),
    )
    .limit(1)
)
_TITLE_UNTITLED = (
    update(threads_table)
    .where(threads_table.c.id == bindparam("thread_key"), threads_table.c.title == literal_column("''"))
    .values(title=bindparam("title"))
)


class Messages(Lineage):
    """Appending to a thread, and reading its messages and summaries."""

    def append_messages(
        self,
        thread_id: str,
        messages: Sequence[MessageCreate],
        *,
        tokens: tuple[str, Sequence[int | None]] | None = None,
        lease_holder: str | None = None,
        first_title: str | None = None,
    ) -> list[MessagePublic]:
        """Messages stored after the thread's last, in one transaction. `tokens`: a tokenizer and
        each message's token count by it, kept with the messages; with `lease_holder`, only while
        it holds the turn lease; `first_title`: see `_title_if_first`."""
        counts = (
            [None] * len(messages) if tokens is None else [(tokens[0], n) if n is not None else None for n in tokens[1]]
        )
        with self._writing() as session:
            thread = self._resolve(session, thread_id)
            check_lease(session, thread.id, lease_holder)
            stored = [
                self._append(session, thread, message, count) for message, count in zip(messages, counts, strict=True)
            ]
            first_user = next((message for message in stored if message.role == "user"), None)
            if first_title is not None and first_user is not None:
                self._title_if_first(session, thread.id, first_title, first_user.position)
            return stored

    def _title_if_first(self, session: Session, thread_id: str, title: str, position: int) -> None:
        """The thread takes `title` (made from its user message at `position`, just stored) if
        that message is its first user message and the thread has no title: in the commit that
        stores the message, so a title the user gave, before or meanwhile, is never replaced, and
        one the user took away later does not come back."""
        if not self._across(session, thread_id, _USER_MESSAGE_BEFORE, {"before": position}, limit=1):
            session.execute(_TITLE_UNTITLED, {"thread_key": thread_id, "title": title})

    def _append(
        self, session: Session, thread: Thread | str, message: MessageCreate, tokens: tuple[str, int] | None
    ) -> MessagePublic:
        """The message stored after the thread's last, the thread's `updated_at` moved with it
        (on a loaded `thread` too, which is not written again for it)."""
        thread_id = thread if isinstance(thread, str) else thread.id
        last = session.execute(LAST_POSITION, {"thread_key": thread_id}).scalar()
        now = utcnow()
        values = message.model_dump(exclude={"created_at"})
        values.update(thread_id=thread_id, position=count_from_last(last), created_at=message.created_at or now)
        if message.parts is not None:
            values["parts"] = stored_parts(session, message.parts)
        message_id = session.execute(_INSERT_MESSAGE, values).scalar_one()
        session.info["history_version"] = session.execute(
            _TOUCH_THREAD, {"thread_key": thread_id, "now": now}
        ).scalar_one()
        if not isinstance(thread, str):
            set_committed_value(thread, "updated_at", now)
        if tokens is not None:
            session.execute(_INSERT_TOKENS, {"message_id": message_id, "tokenizer": tokens[0], "tokens": tokens[1]})
        return MessagePublic(id=message_id, **values)

    def messages(self, ref: str, *, last: int | None = None) -> list[MessagePublic]:
        """The thread's transcript: every message in order, undone ones included; with `last`,
        only the newest that many (read newest first over the index, so a long thread costs no
        more)."""
        with self._reading() as session:
            thread = self._resolve(session, ref)
            query = THREAD_MESSAGES
            if last is not None:
                query = query.order_by(messages_table.c.position.desc()).limit(bindparam("page"))
                newest = self._across(session, thread.id, query, {}, limit=last, limit_key="page")
                return [message_of(row, thread.id) for row in reversed(newest)]
            rows = self._across(session, thread.id, query.order_by(messages_table.c.position), {}, oldest_first=True)
            return [message_of(row, thread.id) for row in rows]

    def message_at(self, thread_id: str, position: int) -> MessagePublic:
        """The thread's message at `position` (NotFound if it has none there)."""
        with self._core_reading() as connection:
            at_position = THREAD_MESSAGES.where(messages_table.c.position == bindparam("at"))
            rows = self._across(connection, thread_id, at_position, {"at": position}, limit=1)
        if not rows:
            raise NotFound(f"thread {thread_id} has no message #{position}")
        return message_of(rows[0], thread_id)

    def message_page(
        self, thread_id: str, *, after: int | None, limit: int, newest_first: bool
    ) -> tuple[list[MessagePublic], bool]:
        """Up to `limit` of the thread's messages after position `after` (None: from the start)
        in the order asked, and whether more follow; one index range read. Undone messages are
        left out: they are no longer part of the conversation."""
        query = THREAD_MESSAGES
        if after is not None:
            anchor = "after_position"
            query = (
                thread_messages(last=position_param(anchor, -1))
                if newest_first
                else thread_messages(position_param(anchor, 1))
            )
        query = query.where(NOT_UNDONE)
        order = messages_table.c.position.desc() if newest_first else messages_table.c.position
        query = query.order_by(order).limit(bindparam("page"))
        with self._core_reading() as connection:
            rows = self._across(
                connection,
                thread_id,
                query,
                {"after_position": after},
                oldest_first=not newest_first,
                limit=limit + 1,
                limit_key="page",
            )
        return [message_of(row, thread_id) for row in rows[:limit]], len(rows) > limit

    def completed_messages(self, thread_id: str, *, after: int, through: int, limit: int) -> list[MessagePublic]:
        """Completed messages with positions in (after, through], oldest first, at most `limit`:
        what a summary folds."""
        query = (
            thread_messages(position_param("after_position", 1), position_param("through_position"))
            .where(messages_table.c.status == literal_column("'complete'"))
            .order_by(messages_table.c.position)
            .limit(bindparam("page"))
        )
        values = {"after_position": after, "through_position": through}
        with self._core_reading() as connection:
            rows = self._across(connection, thread_id, query, values, oldest_first=True, limit=limit, limit_key="page")
        return [message_of(row, thread_id) for row in rows]

    def contents(self, message_ids: Sequence[int]) -> dict[int, str]:
        """The text of these messages, by id (what a turn counts or sends of those it chose)."""
        found: dict[int, str] = {}
        with self._reading() as session:
            for start in range(0, len(message_ids), 500):
                chunk = list(message_ids[start : start + 500])
                query = select(Message.id, Message.content).where(col(Message.id).in_(chunk))
                found.update(session.exec(query).all())
        return found

    def items_of(self, message_ids: Sequence[int]) -> dict[int, MessagePublic]:
        """Whole messages by id (as stored, under the thread that stores them): what a turn sends of
        items that are more than text (calls, outputs, reasoning, parts)."""
        found: dict[int, MessagePublic] = {}
        with self._core_reading() as connection:
            for start in range(0, len(message_ids), 500):
                chunk = list(message_ids[start : start + 500])
                rows = connection.execute(select_columns(messages_table).where(messages_table.c.id.in_(chunk)))
                found.update((row.id, message_of(row, row.thread_id)) for row in rows)
        return found

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
        row = Summary.model_validate(
            summary, update={"thread_id": thread_id, "created_at": summary.created_at or utcnow()}
        )
        with self._writing() as session:
            check_lease(session, thread_id, lease_holder)
            session.add(row)
            session.flush()
            return SummaryPublic.model_validate(row)
