"""Engines and schema versions.

memchat brings every database it opens to the newest Alembic revision, through the same
scripts an operator runs with `memchat db upgrade`; there is no `create_all`.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from memchat.config import db_timeout, memchat_version
from memchat.errors import InvalidInput, StorageError
from memchat.redact import mask_url_passwords

HEAD_REVISION = "0015"
"""The newest revision in migrations/versions (a test keeps the two in step), so a database that
is already current is recognised with one query instead of loading Alembic."""
SEARCH_OBJECTS = ("messages_fts", "ix_messages_fulltext")
"""The full-text index (SQLite's FTS5 table and its shadow tables, PostgreSQL's GIN index),
made by revision 0004 with each database's own DDL; not in SQLModel's metadata."""
POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URLs as users write them; memchat talks to PostgreSQL through psycopg 3 (the `postgres` extra)."""


def _postgres_timeouts(seconds: float) -> dict:
    """libpq's settings for a database that stops answering: connecting gives up after
    `seconds`; a statement, or its wait for a lock, is cancelled by the server after `seconds`;
    and a link that goes silent (sent bytes never acknowledged, keepalives unanswered) is
    dropped by the kernel after `seconds`, where no server is left to cancel anything."""
    milliseconds = int(seconds * 1000)
    probe = max(1, int(seconds // 3))
    return {
        "connect_timeout": max(2, round(seconds)),
        "options": f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}",
        "keepalives": 1,
        "keepalives_idle": probe,
        "keepalives_interval": probe,
        "keepalives_count": 3,
        "tcp_user_timeout": milliseconds,
    }


def migrations_dir() -> Path:
    """The Alembic scripts: packaged as `memchat/_migrations` in an installed wheel,
    `migrations/` beside the package in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StorageError("memchat's migration scripts are missing from this installation; reinstall memchat")


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """With `immediate`, SQLite transactions take the write lock when they begin (BEGIN
    IMMEDIATE), so a writer that has read never fails to upgrade its lock ("database is locked")
    and reads and writes of one transaction see one state; for the store's write sessions."""
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError) as exc:
        raise InvalidInput(f"invalid database URL {mask_url_passwords(url)!r}: {_url_problem(exc)}") from None
    if parsed.drivername.startswith("sqlite"):
        return _sqlite_engine(parsed, immediate=immediate)
    if parsed.get_backend_name() not in POSTGRES_SCHEMES:
        raise InvalidInput(
            f"memchat keeps its memory in SQLite or PostgreSQL, not {parsed.get_backend_name()}: give a file path "
            '(SQLite) or a postgresql:// URL (pip install "memchat[postgres]")'
        )
    if parsed.drivername in POSTGRES_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        timeout = db_timeout()
        return create_engine(parsed, pool_pre_ping=True, pool_timeout=timeout, connect_args=_postgres_timeouts(timeout))
    except ImportError:
        raise StorageError(
            f'no driver for {parsed.drivername}: install it, e.g. pip install "memchat[postgres]"'
        ) from None
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot use database {parsed.render_as_string(hide_password=True)}: {exc}") from None


def _url_problem(exc: Exception) -> str:
    text = str(exc).splitlines()[0]
    if "invalid literal for int()" in text:
        return "the port must be a number"
    return text


def _sqlite_engine(url, *, immediate: bool) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        directory = Path(url.database).parent
        if not directory.is_dir():
            raise StorageError(f"database directory {directory} does not exist; create it or choose another --db")
        _create_private(Path(url.database))
    timeout = db_timeout()
    engine = create_engine(url, pool_timeout=timeout, connect_args={"timeout": timeout})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
        if immediate:
            dbapi_connection.isolation_level = None

    if immediate:

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class WriterQueue:
    """The writers of one SQLite database in this process, served first come, first served.

    SQLite lets one writer in at a time, and its busy handler makes the others poll: each sleeps
    and tries again, and a writer that arrives between two tries gets in first. Under load (a
    server answering hundreds of reads beside its turns) a writer could lose that race until its
    busy time-out ran out and its turn failed with "database is locked", although every write
    takes milliseconds. Queued here instead, a writer waits only for the writers ahead of it;
    SQLite's busy handler is left with the writers of other processes."""

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._waiting: deque[object] = deque()
        self._holder: int | None = None
        self._depth = 0

    @contextmanager
    def turn(self, timeout: float) -> Iterator[None]:
        """Hold the database's write turn while the block runs; a StorageError after `timeout`
        seconds in the queue. A thread that holds it already goes on (a write inside a write)."""
        me = threading.get_ident()
        with self._turns:
            if self._holder != me:
                ticket = object()
                self._waiting.append(ticket)
                if not self._turns.wait_for(lambda: self._holder is None and self._waiting[0] is ticket, timeout):
                    self._waiting.remove(ticket)
                    self._turns.notify_all()
                    raise StorageError(
                        f"database is locked: other writers held it for more than {timeout:g} s (MEMCHAT_DB_TIMEOUT)"
                    )
                self._waiting.popleft()
                self._holder = me
            self._depth += 1
        try:
            yield
        finally:
            with self._turns:
                self._depth -= 1
                if self._depth == 0:
                    self._holder = None
                    self._turns.notify_all()


_WRITER_QUEUES: dict[str, WriterQueue] = {}
_WRITER_QUEUES_LOCK = threading.Lock()


def writer_queue(engine: Engine) -> WriterQueue | None:
    """The queue of this process's writers to `engine`'s SQLite file (one per file, shared by
    every store that opens it); None for PostgreSQL, whose row locks let writers work side by side."""
    if engine.dialect.name != "sqlite":
        return None
    key = engine.url.render_as_string(hide_password=False)
    with _WRITER_QUEUES_LOCK:
        return _WRITER_QUEUES.setdefault(key, WriterQueue())


def _create_private(path: Path) -> None:
    """A new database file is created readable by its owner only (0600); SQLite gives its -wal
    and -shm files the database file's permissions. An existing file is left as it is."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot create database {path}: {exc.strerror}") from None


def snapshot_reads(engine: Engine) -> Engine:
    """`engine` for reads whose every transaction sees one snapshot of the database, so a read of
    several statements (a fork's lineage, then the messages of each segment) never sees half of a
    change (the delete of an origin, which copies into its forks what they read). PostgreSQL:
    REPEATABLE READ. SQLite: a BEGIN of its own, as Python's sqlite3 begins no transaction for a
    SELECT and each statement would see the newest commit. Shares the engine's connections."""
    if engine.dialect.name != "sqlite":
        return engine.execution_options(isolation_level="REPEATABLE READ")
    reads = engine.execution_options()

    @event.listens_for(reads, "begin")
    def _begin_read(connection):
        connection.exec_driver_sql("BEGIN")

    return reads


def include_name(name, type_, parent_names) -> bool:
    """For Alembic's comparisons: the full-text index is not described by the models."""
    return not (name or "").startswith(SEARCH_OBJECTS)


def ensure_current(engine: Engine) -> None:
    """Migrate to head unless the database is there already (the common case, checked cheaply)."""
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        version = None
    if version != HEAD_REVISION:
        upgrade(engine)


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read database {engine.url.render_as_string(hide_password=True)}: {_reason(exc)}"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, refusing a database migrated by a newer memchat."""
    from alembic import command

    config = _alembic_config()
    current = current_revision(engine)
    if current is not None and current not in known_revisions():
        raise StorageError(f"{newer_memchat_needed(engine, current)}; this memchat leaves it untouched")
    try:
        with migration_connection(engine) as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            if revision == "head":
                _record_version(connection)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate database: {_reason(exc)}") from None


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def _record_version(connection: Connection) -> None:
    connection.execute(text("DELETE FROM schema_info WHERE key = 'memchat_version'"))
    connection.execute(
        text("INSERT INTO schema_info (key, value) VALUES ('memchat_version', :version)"),
        {"version": memchat_version()},
    )


def newer_memchat_needed(engine: Engine, revision: str) -> str:
    """What to tell the user of a database whose schema revision this memchat does not know:
    a newer memchat migrated it, and which version that was, when the database says."""
    try:
        with engine.connect() as connection:
            written_by = connection.execute(
                text("SELECT value FROM schema_info WHERE key = 'memchat_version'")
            ).scalar()
    except SQLAlchemyError:
        written_by = None
    install = f"install memchat {written_by} or newer" if written_by else "install a newer memchat"
    return (
        f"the database is at schema revision {revision}, written by a newer memchat than this one "
        f"({memchat_version()}): {install} (pip install -U memchat)"
    )


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    config = _alembic_config()
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """One transaction for a migration, free of the statement time-out on PostgreSQL (a large
    database's migration may take minutes). On SQLite, foreign keys are off while it runs: a batch
    operation rebuilds a table by copying it and dropping the original, and with foreign keys on
    that drop would cascade to every row that refers to it (a thread's messages)."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if not sqlite:
                    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                yield connection
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0]
