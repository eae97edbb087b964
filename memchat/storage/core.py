"""The store's base: engines, sessions, snapshot reads, transactions and the tenant view.

Each public method of the store is one transaction (`_writing`), so a failure part-way leaves
nothing half-written; reads share one session inside a `snapshot`. Every part of the store
(threads, messages, leases, ...) builds on `StoreCore`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Self

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from memchat.errors import InvalidInput, NotFound, StorageError
from memchat.records import ThreadPublic
from memchat.schemas import check_text
from memchat.storage import database
from memchat.storage.caches import StoreCaches
from memchat.storage.models import Thread
from memchat.storage.statements import LAST_POSITION, count_from_last

AMBIGUOUS_SHOWN = 5
"""Matching ids an ambiguous prefix's error lists."""


def checked_ref(ref: str) -> str:
    """A thread id (or prefix) as given, stripped: refused if empty or not storable text."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput("empty thread id")
    try:
        return check_text(ref)
    except ValueError as exc:
        raise InvalidInput(f"the thread id {exc}") from None


class StoreCore:
    """One database, its engines and the sessions every part of the store reads and writes
    through; a tenant view (`for_tenant`) shares them, and the process caches (`caches`)."""

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
        self.caches = StoreCaches()
        self.tenant: str | None = None
        self._owner = True

    def for_tenant(self, tenant: str) -> Self:
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

    def _resolve(self, session: Session, ref: str) -> Thread:
        """An id, or an unambiguous prefix of one, as git accepts for commits."""
        ref = checked_ref(ref)
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

    def _public(self, session: Session, thread: Thread) -> ThreadPublic:
        last = session.execute(LAST_POSITION, {"thread_key": thread.id}).scalar()
        return ThreadPublic.model_validate(thread).model_copy(update={"message_count": count_from_last(last)})

    def _titles(self, thread_ids: set[str]) -> dict[str, str]:
        if not thread_ids:
            return {}
        with self._reading() as session:
            return dict(session.exec(select(Thread.id, Thread.title).where(col(Thread.id).in_(thread_ids))).all())

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


class _Transaction:
    """A session that commits on success, rolls back on any error, and reports database
    failures as StorageError instead of SQLAlchemy tracebacks. A write on SQLite first waits its
    turn among this process's writers (database.WriterQueue)."""

    def __init__(self, store: StoreCore, *, commit: bool):
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
