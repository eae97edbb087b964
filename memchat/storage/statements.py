"""Prebuilt statements and query builders that several parts of the store share.

The statements of a turn's hot path are built once: a turn runs a dozen of them, and building and
compiling ORM statements again for each cost more than the database did. A part's own statements
live in its module; those here are the tables, a thread's last position, lineage steps and segment
ranges, and the row conversions every reader uses.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Integer, bindparam, case, func, literal_column
from sqlalchemy import select as select_columns
from sqlmodel import Session

from memchat.errors import StorageError
from memchat.records import MessagePublic
from memchat.storage.models import Message, Summary, Thread, ThreadLease

LAST_POSSIBLE_POSITION = 2**31 - 1
Segment = tuple[str, int, int]
"""Positions `first` to `last` of a thread's history, stored as messages of thread `thread`."""

messages_table = Message.__table__
threads_table = Thread.__table__
leases_table = ThreadLease.__table__
summaries_table = Summary.__table__


def last_position_of(thread_id, inherits_through):
    """A thread's last position: its own last message's, else (a fork that has said nothing yet)
    the last one it inherits (a fork's own messages all come after those it inherits)."""
    own = (
        select_columns(func.max(messages_table.c.position))
        .where(messages_table.c.thread_id == thread_id)
        .scalar_subquery()
    )
    return func.coalesce(own, inherits_through)


LAST_POSITION = select_columns(
    last_position_of(
        bindparam("thread_key"),
        select_columns(threads_table.c.inherits_through)
        .where(threads_table.c.id == bindparam("thread_key"))
        .scalar_subquery(),
    )
)
LINEAGE_STEP = select_columns(threads_table.c.forked_from, threads_table.c.inherits_through).where(
    threads_table.c.id == bindparam("thread_key")
)


def in_segment(first=None, last=None):
    """Positions in the segment (`seg_first`..`seg_last`) and, as well, in [first, last] (SQL
    expressions), as one range: given a second range on the same column, SQLite's planner may
    read the index over the looser one and filter the rest row by row (a turn's window read a
    100,000-message thread whole)."""
    low, high = bindparam("seg_first", type_=Integer), bindparam("seg_last", type_=Integer)
    if first is not None:
        low = case((low > first, low), else_=first)
    if last is not None:
        high = case((high < last, high), else_=last)
    return messages_table.c.position.between(low, high)


IN_SEGMENT = in_segment()
"""Every read of a thread's messages by position runs once for each segment of its lineage
(`Lineage._lineage`): the thread's own positions, then those each origin gives it."""


def position_param(name: str, step: int = 0):
    """A position given as a parameter, one place on (`step` 1) or back (-1): `> p` as `>= p + 1`."""
    given = bindparam(name, type_=Integer)
    return given + step if step else given


HELD_UNDER = func.coalesce(messages_table.c.copied_from, messages_table.c.id)
"""The message whose token counts, index entry and vectors a message shares: a fork's copy
(`copied_from`, revision 0010) its original's, any other its own."""


def thread_messages(first=None, last=None):
    """A thread's messages in one segment of its lineage, within [first, last] if given, narrowed
    and ordered by the caller."""
    return select_columns(messages_table).where(
        messages_table.c.thread_id == bindparam("thread_key"), in_segment(first, last)
    )


THREAD_MESSAGES = thread_messages()
NOT_UNDONE = messages_table.c.status != literal_column("'undone'")


def message_of(row, thread_id: str) -> MessagePublic:
    """A message row as part of `thread_id`, which may be a fork that inherits it (revision 0012)."""
    return MessagePublic.model_validate({**row._mapping, "thread_id": thread_id})


def count_from_last(last_position: int | None) -> int:
    """Positions run 0, 1, 2… without gaps (messages are only appended), so the count and the
    next position both follow from the last one, read from the index."""
    return 0 if last_position is None else last_position + 1


def insert_ignoring_duplicates(session: Session, table):
    """An insert of `table`'s rows that skips a row whose key is there already."""
    return _ignoring_duplicates(session.get_bind().dialect.name, table)


def insert_statement_for(dialect: str, table):
    """An insert in `dialect`'s own form, which can say what to do on a conflict."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        raise StorageError(f"memchat does not support {dialect} databases")
    return dialect_insert(table)


@cache
def _ignoring_duplicates(dialect: str, table):
    return insert_statement_for(dialect, table).on_conflict_do_nothing()
