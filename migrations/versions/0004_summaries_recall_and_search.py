"""Long-term memory: per-thread memory policy and recall, summaries, full-text search.

Full-text search is the database's own: on SQLite an FTS5 index over `messages.content`
(external content, porter stemming) kept in sync by triggers; on PostgreSQL a GIN index over
`to_tsvector('english', content)`. Both stay outside SQLModel's metadata (see
`memchat.storage.database.SEARCH_OBJECTS`).

A later revision that rebuilds `messages` through a SQLite batch operation drops the triggers
with the old table and must create them again (`create_sqlite_search`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SQLITE_SEARCH = [
    # thread_id is indexed too, so that a search in one thread intersects with that thread's
    # messages inside FTS5 instead of ranking every match in the database first.
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "content, thread_id, content='messages', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content, thread_id) VALUES (new.id, new.content, new.thread_id); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content, thread_id) "
    "VALUES ('delete', old.id, old.content, old.thread_id); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, thread_id ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content, thread_id) "
    "VALUES ('delete', old.id, old.content, old.thread_id); "
    "INSERT INTO messages_fts(rowid, content, thread_id) VALUES (new.id, new.content, new.thread_id); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
POSTGRES_SEARCH = "CREATE INDEX ix_messages_fulltext ON messages USING gin (to_tsvector('english', content))"


def create_sqlite_search() -> None:
    for statement in SQLITE_SEARCH:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('policy', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='window'))
        batch_op.add_column(sa.Column('recall', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('summary_model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('summary_share', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('summary_prompt', sa.Text(), nullable=True))

    op.create_table('summaries',
    sa.Column('first_position', sa.Integer(), nullable=False),
    sa.Column('last_position', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('cost', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thread_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['thread_id'], ['threads.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_summaries_thread_id', 'summaries', ['thread_id', 'id'], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        create_sqlite_search()
    else:
        op.execute(POSTGRES_SEARCH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_fulltext")
    op.drop_index('ix_summaries_thread_id', table_name='summaries')
    op.drop_table('summaries')
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.drop_column('summary_prompt')
        batch_op.drop_column('summary_share')
        batch_op.drop_column('summary_model')
        batch_op.drop_column('recall')
        batch_op.drop_column('policy')
