"""The store: every read and write of threads and messages, and the only code that opens sessions.

Each public method is one transaction, so a failure part-way leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, delete, select

from memchat.errors import InvalidInput, NotFound, StorageError
from memchat.storage import database
from memchat.storage.models import (
    Message,
    MessageCreate,
    MessagePublic,
    Thread,
    ThreadCreate,
    ThreadPublic,
    utcnow,
)


@dataclass(frozen=True)
class ThreadRecord:
    """A thread to be written whole, as an import brings it."""

    thread: ThreadCreate
    messages: Sequence[MessageCreate]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Store:
    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self.engine = database.make_engine(url)
        self._migrate = migrate
        self._ready = False

    def _session(self) -> Session:
        if not self._ready:
            if self._migrate:
                database.upgrade(self.engine)
            self._ready = True
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # threads

    def create_thread(self, data: ThreadCreate) -> ThreadPublic:
        thread = Thread.model_validate(data)
        with self._writing() as session:
            session.add(thread)
        return ThreadPublic.model_validate(thread, update={"message_count": 0})

    def thread(self, ref: str) -> ThreadPublic:
        with self._reading() as session:
            thread = self._resolve(session, ref)
            return self._public(session, thread)

    def threads(self) -> list[ThreadPublic]:
        counts = (
            select(Message.thread_id, func.count().label("n")).group_by(col(Message.thread_id)).subquery()
        )
        query = (
            select(Thread, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.thread_id == Thread.id)
            .order_by(col(Thread.updated_at).desc(), col(Thread.id))
        )
        with self._reading() as session:
            return [
                ThreadPublic.model_validate(thread, update={"message_count": count})
                for thread, count in session.exec(query).all()
            ]

    def rename(self, ref: str, title: str) -> ThreadPublic:
        with self._writing() as session:
            thread = self._resolve(session, ref)
            thread.title = title
            thread.updated_at = utcnow()
            session.add(thread)
            session.flush()
            return self._public(session, thread)

    def delete_thread(self, ref: str) -> str:
        with self._writing() as session:
            thread = self._resolve(session, ref)
            session.exec(delete(Message).where(col(Message.thread_id) == thread.id))
            session.delete(thread)
            return thread.id

    # messages

    def messages(self, ref: str, *, statuses: Iterable[str] | None = None) -> list[MessagePublic]:
        with self._reading() as session:
            thread = self._resolve(session, ref)
            query = select(Message).where(Message.thread_id == thread.id).order_by(col(Message.position))
            if statuses is not None:
                query = query.where(col(Message.status).in_(list(statuses)))
            return [MessagePublic.model_validate(m) for m in session.exec(query).all()]

    def append(self, thread_id: str, message: MessageCreate) -> MessagePublic:
        with self._writing() as session:
            thread = self._resolve(session, thread_id)
            return self._append(session, thread, message)

    def complete_turn(self, user_message_id: int, reply: MessageCreate) -> MessagePublic:
        """Store the reply and mark its user message answered, together."""
        with self._writing() as session:
            user_message = self._message(session, user_message_id)
            user_message.status = "complete"
            session.add(user_message)
            thread = self._resolve(session, user_message.thread_id)
            return self._append(session, thread, reply)

    def fail_turn(self, user_message_id: int) -> None:
        with self._writing() as session:
            user_message = self._message(session, user_message_id)
            user_message.status = "failed"
            session.add(user_message)

    def import_threads(self, records: Sequence[ThreadRecord]) -> list[str]:
        """Create every thread or none."""
        ids = []
        with self._writing() as session:
            for record in records:
                thread = Thread.model_validate(record.thread)
                thread.created_at = record.created_at or thread.created_at
                thread.updated_at = record.updated_at or thread.created_at
                session.add(thread)
                session.flush()
                session.add_all(
                    Message.model_validate(
                        message,
                        update={
                            "thread_id": thread.id,
                            "position": position,
                            "created_at": message.created_at or thread.created_at,
                        },
                    )
                    for position, message in enumerate(record.messages)
                )
                ids.append(thread.id)
        return ids

    # internals

    def _append(self, session: Session, thread: Thread, message: MessageCreate) -> MessagePublic:
        last = session.exec(select(func.max(Message.position)).where(Message.thread_id == thread.id)).one()
        now = utcnow()
        row = Message.model_validate(
            message,
            update={
                "thread_id": thread.id,
                "position": (last + 1) if last is not None else 0,
                "created_at": message.created_at or now,
            },
        )
        session.add(row)
        thread.updated_at = now
        session.add(thread)
        session.flush()
        return MessagePublic.model_validate(row)

    def _resolve(self, session: Session, ref: str) -> Thread:
        """An id, or an unambiguous prefix of one, as git accepts for commits."""
        ref = ref.strip()
        if not ref:
            raise InvalidInput("empty thread id")
        thread = session.get(Thread, ref)
        if thread is not None:
            return thread
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = session.exec(
            select(Thread).where(col(Thread.id).like(escaped + "%", escape="\\")).limit(2)
        ).all()
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InvalidInput(f"thread id {ref!r} is ambiguous; give more characters")
        raise NotFound(f"no thread {ref!r}; `memchat list` shows the threads")

    def _message(self, session: Session, message_id: int) -> Message:
        message = session.get(Message, message_id)
        if message is None:
            raise NotFound(f"no message {message_id}")
        return message

    def _public(self, session: Session, thread: Thread) -> ThreadPublic:
        count = session.exec(select(func.count()).where(Message.thread_id == thread.id)).one()
        return ThreadPublic.model_validate(thread, update={"message_count": count})

    def _reading(self):
        return _Transaction(self, commit=False)

    def _writing(self):
        return _Transaction(self, commit=True)


class _Transaction:
    """A session that commits on success, rolls back on any error, and reports database
    failures as StorageError instead of SQLAlchemy tracebacks."""

    def __init__(self, store: Store, *, commit: bool):
        self._store = store
        self._commit = commit

    def __enter__(self) -> Session:
        try:
            self._session = self._store._session()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open database: {database._reason(exc)}") from None
        return self._session

    def __exit__(self, exc_type, exc, tb):
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
