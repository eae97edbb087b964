"""A per-message limit on what later contexts send of it, imports written in short
transactions, and which memchat wrote the schema.

`messages.context_limit`: set on a reply far longer than the reply tokens its turn asked for
(a provider that ignored max_tokens); the reply is stored whole, and later contexts send its
first `context_limit` tokens with a note, so one runaway reply cannot crowd out every later
window. `threads.import_holder`: an import writes its threads hidden, in short transactions
(other writers keep going), and shows them all at once when it is done. `threads.api_base`: the
endpoint a thread's turns go to (a local server), without a password. `ix_messages_unfinished`: a
partial index over the few messages whose turn got no complete reply, so `memchat list` counts
them apart at no cost. `schema_info`: the version of memchat that last migrated the database, so that an older
memchat can say which version to install instead of only refusing.

Both are changed in place (no SQLite batch rebuild of `messages`, which would drop the
full-text triggers of revision 0004).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.execute("ALTER TABLE messages ADD COLUMN context_limit INTEGER")
    op.execute("ALTER TABLE threads ADD COLUMN import_holder VARCHAR(200)")
    op.execute("ALTER TABLE threads ADD COLUMN api_base VARCHAR(500)")
    op.execute("CREATE INDEX ix_messages_unfinished ON messages (thread_id) WHERE status != 'complete'")
    op.create_table('schema_info',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_messages_unfinished")
    op.drop_table('schema_info')
    # Threads an unfinished import left hidden would show up once the column is gone.
    hidden = "SELECT id FROM threads WHERE import_holder IS NOT NULL"
    op.execute(f"DELETE FROM message_tokens WHERE message_id IN (SELECT id FROM messages WHERE thread_id IN ({hidden}))")
    for table in ("summaries", "thread_leases", "messages"):
        op.execute(f"DELETE FROM {table} WHERE thread_id IN ({hidden})")
    op.execute(f"DELETE FROM threads WHERE id IN ({hidden})")
    op.execute("ALTER TABLE threads DROP COLUMN import_holder")
    op.execute("ALTER TABLE threads DROP COLUMN api_base")
    op.execute("ALTER TABLE messages DROP COLUMN context_limit")
