"""Turn leases: which process may take a turn on a thread now (`memchat.lease` keeps one
alive); the checks every leased write makes (`check_lease`, `take_lease`), which the other
parts of the store run inside their own transactions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cache

from sqlalchemy import bindparam, update
from sqlalchemy import select as select_columns
from sqlmodel import Session, delete

from memchat.errors import LeaseLost
from memchat.storage.core import StoreCore
from memchat.storage.statements import insert_statement_for, leases_table
from memchat.times import as_utc, utcnow

_LEASE_HOLDER = select_columns(leases_table.c.holder, leases_table.c.expires_at).where(
    leases_table.c.thread_id == bindparam("thread_key")
)
_LOCKED_LEASE = _LEASE_HOLDER.with_for_update()
_SET_LEASE = (
    update(leases_table)
    .where(leases_table.c.thread_id == bindparam("thread_key"))
    .values(holder=bindparam("new_holder"), expires_at=bindparam("until"))
)
RELEASE_LEASE = delete(leases_table).where(
    leases_table.c.thread_id == bindparam("thread_key"), leases_table.c.holder == bindparam("old_holder")
)


@cache
def _lease_taking(dialect: str):
    """The lease inserted, or taken over from the same holder or from an empty one (the
    placeholder rows earlier versions left); a row held by anyone else is left as it is (no row
    changed: the caller looks closer)."""
    statement = insert_statement_for(dialect, leases_table)
    return statement.on_conflict_do_update(
        index_elements=[leases_table.c.thread_id],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=leases_table.c.holder.in_(["", statement.excluded.holder]),
    )


def take_lease(
    session: Session,
    thread_id: str,
    holder: str,
    seconds: float,
    is_gone: Callable[[str], bool],
    *,
    renewing: bool = False,
) -> bool:
    """The thread's lease taken by `holder` for `seconds` inside `session`'s transaction (or,
    `renewing`, extended); False if another live holder has it (or, renewing, has had it since)."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    if not renewing:
        # One statement, atomic on both backends (two processes that both find no lease
        # cannot both take it): the lease inserted where there is none (the last turn deleted
        # it), or taken over from ourselves; a row another holder has is left, locked, for
        # the checks below.
        taken = session.execute(
            _lease_taking(StoreCore._dialect(session)),
            {"thread_id": thread_id, "holder": holder, "expires_at": until},
        )
        if taken.rowcount == 1:
            return True
    lease = session.execute(_LOCKED_LEASE, {"thread_key": thread_id}).first()
    if lease is None:
        # Gone: renewing, the turn has lost it; taking, its holder's release committed in
        # between (PostgreSQL), and the caller tries again.
        return False
    if renewing and lease.holder != holder:
        return False
    if lease.holder not in ("", holder) and as_utc(lease.expires_at) > now and not is_gone(lease.holder):
        return False
    session.execute(_SET_LEASE, {"thread_key": thread_id, "new_holder": holder, "until": until})
    return True


def check_lease(session: Session, thread_id: str, holder: str | None) -> None:
    """LeaseLost unless `holder` (if given) holds the thread's turn lease, the row then held
    until `session` ends: a leased write goes on only while its turn still owns the thread."""
    if holder is None:
        return
    lease = session.execute(_LOCKED_LEASE, {"thread_key": thread_id}).first()
    if lease is None or lease.holder != holder:
        raise LeaseLost(thread_id)


class Leases(StoreCore):
    """Taking, renewing, reading and giving up a thread's turn lease."""

    def acquire_lease(
        self,
        thread_id: str,
        holder: str,
        seconds: float,
        is_gone: Callable[[str], bool],
        *,
        renewing: bool = False,
    ) -> bool:
        """Take the thread's lease for `seconds`, unless another live holder has it; with
        `renewing`, only extend it, and fail if anyone else has held it since."""
        with self._writing() as session:
            return take_lease(session, thread_id, holder, seconds, is_gone, renewing=renewing)

    def live_lease_holder(self, thread_id: str) -> str | None:
        """Who holds the thread's turn lease now, if anyone (a turn is in progress)."""
        with self._core_reading() as connection:
            lease = connection.execute(_LEASE_HOLDER, {"thread_key": thread_id}).first()
        if lease is None or not lease.holder or as_utc(lease.expires_at) <= utcnow():
            return None
        return lease.holder

    def release_lease(self, thread_id: str, holder: str) -> None:
        """The lease given up, if `holder` still has it (a lease another holder took is left)."""
        with self._writing() as session:
            session.execute(RELEASE_LEASE, {"thread_key": thread_id, "old_holder": holder})
