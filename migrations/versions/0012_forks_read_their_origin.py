"""Forks read their origin's messages instead of copying them: a fork holds its own messages
(positions after `inherits_through`) and reads positions up to `inherits_through` from the
thread it was forked from (and that one's origin, as far as it inherits), so forking a
100,000-message thread writes one row. A change to an inherited message (an undo, a retry's
status) first copies the fork's messages from that position on (copy on write, as copies of
revision 0010), and so does a change to, or the deletion of, a thread others inherit from.
NULL: the thread inherits nothing (every thread before this revision, every imported one).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('inherits_through', sa.Integer(), nullable=True))
    # The forks that read a thread's messages, found when one of them changes.
    op.create_index(
        'ix_threads_inheriting', 'threads', ['forked_from'],
        sqlite_where=sa.text('inherits_through IS NOT NULL'), postgresql_where=sa.text('inherits_through IS NOT NULL'),
    )


_COPIED = (
    "role, content, status, model, prompt_tokens, completion_tokens, cost, latency_ms, created_at, context_limit, position"
)


def downgrade() -> None:
    # Every fork first takes copies of what it inherits (0010's copies, sharing their originals'
    # index entries and counts), an origin before its forks, so that no message is lost.
    bind = op.get_bind()
    while True:
        ready = bind.execute(sa.text(
            "SELECT f.id, f.forked_from, f.inherits_through FROM threads f JOIN threads o ON o.id = f.forked_from "
            "WHERE f.inherits_through IS NOT NULL AND o.inherits_through IS NULL"
        )).all()
        if not ready:
            break
        for fork, origin, through in ready:
            bind.execute(
                sa.text(
                    f"INSERT INTO messages (thread_id, {_COPIED}, copied_from) "
                    f"SELECT :fork, {_COPIED}, coalesce(copied_from, id) FROM messages "
                    "WHERE thread_id = :origin AND position <= :through"
                ),
                {"fork": fork, "origin": origin, "through": through},
            )
            bind.execute(sa.text("UPDATE threads SET inherits_through = NULL WHERE id = :fork"), {"fork": fork})
    op.drop_index('ix_threads_inheriting', table_name='threads')
    op.execute("ALTER TABLE threads DROP COLUMN inherits_through")
