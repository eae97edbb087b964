"""A turn's writes: its first commit (lease and user message), its last (the reply, the
lease released), retries' status changes, undo and accepting a cut-off reply; and the history
version a turn's context depends on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import bindparam, literal_column, update
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from memchat.errors import HistoryMoved, InvalidInput, LeaseLost, NotFound
from memchat.records import MessageCreate, MessagePublic
from memchat.storage.leases import RELEASE_LEASE, check_lease, take_lease
from memchat.storage.messages import Messages
from memchat.storage.models import Message
from memchat.storage.statements import (
    IN_SEGMENT,
    NOT_UNDONE,
    THREAD_MESSAGES,
    message_of,
    messages_table,
    threads_table,
)

_HISTORY_VERSION = select_columns(threads_table.c.history_version).where(threads_table.c.id == bindparam("thread_key"))
_LOCKED_HISTORY_VERSION = _HISTORY_VERSION.with_for_update()
_SET_STATUS = (
    update(messages_table).where(messages_table.c.id == bindparam("message_key")).values(status=bindparam("new_status"))
)
_FINISH_USER_MESSAGE = _SET_STATUS.returning(messages_table.c.thread_id, messages_table.c.position)
_LAST_USER_MESSAGE = (
    select_columns(messages_table)
    .where(
        messages_table.c.thread_id == bindparam("thread_key"),
        IN_SEGMENT,
        messages_table.c.role == literal_column("'user'"),
        messages_table.c.status != literal_column("'undone'"),
    )
    .order_by(messages_table.c.position.desc())
    .limit(1)
)


def _counts(tokens: tuple[str, Sequence[int | None]] | None, length: int) -> list[tuple[str, int] | None]:
    if tokens is None:
        return [None] * length
    return [None if count is None else (tokens[0], count) for count in tokens[1]]


class TurnWrites(Messages):
    """A turn's first and last commits, a retry's status change, undo, accepting a cut-off reply."""

    def begin_turn(
        self,
        thread_id: str,
        holder: str,
        seconds: float,
        is_gone: Callable[[str], bool],
        *,
        seen: int,
        messages: Sequence[MessageCreate] = (),
        resend: Sequence[int] = (),
        tokens: tuple[str, Sequence[int | None]] | None = None,
        first_title: str | None = None,
    ) -> list[MessagePublic] | None:
        """A turn's first commit: take the lease and store the turn's new items (`messages`: the
        user's message, tool outputs), or mark messages `resend` pending again, together, if the
        thread is still as the turn's context saw it (`seen`, its `history_version`). None:
        another turn holds the lease. HistoryMoved: the history changed since; build the context
        again. `tokens`: a tokenizer and each message's count by it (None: counted when first
        read). `first_title`: the thread's
        title if the user's message is its first and it has none (`_title_if_first`)."""
        counts = _counts(tokens, len(messages))
        with self._writing() as session:
            if not take_lease(session, thread_id, holder, seconds, is_gone):
                return None
            if session.execute(_LOCKED_HISTORY_VERSION, {"thread_key": thread_id}).scalar() != seen:
                raise HistoryMoved(thread_id)
            if resend:
                stored = []
                for message_id in resend:
                    again = self._own_message(session, thread_id, message_id)
                    again.status = "pending"
                    session.add(again)
                    session.flush()
                    stored.append(MessagePublic.model_validate(again))
                now = session.execute(_HISTORY_VERSION, {"thread_key": thread_id}).scalar_one()
            else:
                stored = [
                    self._append(session, thread_id, message, count)
                    for message, count in zip(messages, counts, strict=True)
                ]
                now = session.info["history_version"]
                user = next((message for message in stored if message.role == "user"), None)
                if first_title is not None and user is not None:
                    self._title_if_first(session, thread_id, first_title, user.position)
        self.caches.recent.advance(thread_id, seen=seen, now=now, changed_from=stored[0].position)
        return stored

    def finish_turn(
        self,
        thread_id: str,
        said_ids: Sequence[int],
        replies: Sequence[MessageCreate],
        tokens: tuple[str, Sequence[int | None]] | None = None,
        *,
        user_status: str = "complete",
        lease_holder: str | None = None,
        release: bool = False,
    ) -> list[MessagePublic]:
        """Store the reply's items (complete, or a partial reply with the turn's own items,
        `said_ids`, marked failed), together; with `lease_holder`, only while that holder still
        has the thread's turn lease, and with `release`, giving the lease up in the same commit (a
        turn's second and last): the release is the check, a lease held by no one else is the one
        row it deletes. `tokens`: a tokenizer and each reply item's count by it."""
        counts = _counts(tokens, len(replies))
        with self._writing() as session:
            if release and lease_holder is not None:
                released = session.execute(RELEASE_LEASE, {"thread_key": thread_id, "old_holder": lease_holder})
                if released.rowcount != 1:
                    raise LeaseLost(thread_id)
            else:
                check_lease(session, thread_id, lease_holder)
            seen = session.execute(_LOCKED_HISTORY_VERSION, {"thread_key": thread_id}).scalar()
            first = None
            for said_id in said_ids:
                user = session.execute(
                    _FINISH_USER_MESSAGE, {"message_key": said_id, "new_status": user_status}
                ).first()
                if seen is None or user is None or user.thread_id != thread_id:
                    raise NotFound(f"no message {said_id} in thread {thread_id}")
                first = user.position if first is None else min(first, user.position)
            stored = [
                self._append(session, thread_id, reply, count) for reply, count in zip(replies, counts, strict=True)
            ]
            now = session.info["history_version"]
        self.caches.recent.advance(
            thread_id, seen=seen, now=now, changed_from=stored[0].position if first is None else first
        )
        return stored

    def history_version(self, thread_id: str) -> int:
        """What a turn's context depends on, in one read by primary key: raised by every append
        and every status change of the thread's messages (revision 0009)."""
        with self._core_reading() as connection:
            version = connection.execute(_HISTORY_VERSION, {"thread_key": thread_id}).scalar()
        if version is None:
            raise NotFound(f"no thread {thread_id!r}")
        return version

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
            check_lease(session, thread_id, lease_holder)
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
            check_lease(session, thread_id, lease_holder)
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
        newest = THREAD_MESSAGES.where(NOT_UNDONE).order_by(messages_table.c.position.desc()).limit(bindparam("page"))
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

    def open_calls(self, thread_id: str) -> tuple[list[MessagePublic], list[MessagePublic]]:
        """The thread's function calls still waiting for their outputs, and the model response
        that made them (its items, oldest first; both empty when no call waits): only the last
        response can have any, since a turn that leaves a call unanswered is refused."""
        response: list[MessagePublic] = []
        answered: set[str] = set()
        for message in self._newest_first(thread_id):
            if message.status != "complete":
                continue
            if message.kind == "function_call_output":
                if response:
                    break
                answered.add(message.call_id)
            elif message.role == "assistant":
                response.append(message)
            else:
                break
        return self._waiting(response, answered)

    def _newest_first(self, thread_id: str) -> Iterator[MessagePublic]:
        """The thread's messages (undone ones left out), newest first, read in pages that start
        small and grow: a turn asks what its last reply left waiting, which is a message or two
        back in a chat and one agent step back in an agent's run."""
        after, limit = None, 4
        while True:
            page, more = self.message_page(thread_id, after=after, limit=limit, newest_first=True)
            yield from page
            if not more:
                return
            after, limit = page[-1].position, min(limit * 4, 256)

    @staticmethod
    def _waiting(response: list[MessagePublic], answered: set[str]) -> tuple[list[MessagePublic], list[MessagePublic]]:
        response.reverse()
        waiting = [m for m in response if m.kind == "function_call" and m.call_id not in answered]
        return (waiting, response) if waiting else ([], [])

    def failed_outputs(self, thread_id: str, waiting: Sequence[MessagePublic]) -> list[MessagePublic]:
        """The outputs a failed turn sent for the calls still `waiting` (the newest one for each
        call, oldest first): what a retry sends again."""
        wanted = {call.call_id for call in waiting}
        found: dict[str, MessagePublic] = {}
        for message in self._newest_first(thread_id):
            if message.kind != "function_call_output" or message.status == "complete" or wanted <= set(found):
                break
            if message.status == "failed" and message.call_id in wanted:
                found.setdefault(message.call_id, message)
        return sorted(found.values(), key=lambda m: m.position)

    def unanswered(self, thread_id: str) -> MessagePublic | None:
        """The thread's last user message, if its turn got no complete reply."""
        with self._core_reading() as connection:
            found = self._across(connection, thread_id, _LAST_USER_MESSAGE, {}, limit=1)
        return message_of(found[0], thread_id) if found and found[0].status != "complete" else None
