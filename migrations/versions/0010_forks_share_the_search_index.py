"""Forks share their original's full-text index: a message copied by a fork records the message
it is a copy of (`copied_from`, always the indexed one, however many forks deep) and is not
indexed again, so a fork writes plain rows and no index entries (a 100,000-message fork spent
nearly all its time in FTS5 and GIN). Search and recall find a copy through its original's
entry. When an original is deleted, its copies become originals and are indexed then (a
trigger, so no write path can forget it).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_FTS_INSERT = "INSERT INTO messages_fts(rowid, content, thread_id) VALUES (new.id, new.content, new.thread_id)"
_FTS_DELETE = (
    "INSERT INTO messages_fts(messages_fts, rowid, content, thread_id) VALUES ('delete', old.id, old.content, old.thread_id)"
)
SQLITE_TRIGGERS = [
    "DROP TRIGGER messages_fts_insert",
    "DROP TRIGGER messages_fts_delete",
    "DROP TRIGGER messages_fts_update",
    f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.copied_from IS NULL BEGIN {_FTS_INSERT}; END",
    f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.copied_from IS NULL BEGIN {_FTS_DELETE}; END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, thread_id ON messages "
    f"WHEN old.copied_from IS NULL AND new.copied_from IS NULL BEGIN {_FTS_DELETE}; {_FTS_INSERT}; END",
    "CREATE TRIGGER messages_fts_copy_promoted AFTER UPDATE OF copied_from ON messages "
    f"WHEN old.copied_from IS NOT NULL AND new.copied_from IS NULL BEGIN {_FTS_INSERT}; END",
    "CREATE TRIGGER messages_original_deleted BEFORE DELETE ON messages WHEN old.copied_from IS NULL BEGIN "
    "UPDATE messages SET copied_from = NULL WHERE copied_from = old.id; END",
]
POSTGRES_STATEMENTS = [
    "DROP INDEX ix_messages_fulltext",
    "CREATE INDEX ix_messages_fulltext ON messages USING gin (to_tsvector('english', content)) WHERE copied_from IS NULL",
    "CREATE FUNCTION memchat_original_deleted() RETURNS trigger AS $$ BEGIN "
    "UPDATE messages SET copied_from = NULL WHERE copied_from = OLD.id; RETURN OLD; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER messages_original_deleted BEFORE DELETE ON messages "
    "FOR EACH ROW WHEN (OLD.copied_from IS NULL) EXECUTE FUNCTION memchat_original_deleted()",
]


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('messages', sa.Column('copied_from', sa.Integer(), nullable=True))
    copies_only = {"sqlite_where": sa.text('copied_from IS NOT NULL'), "postgresql_where": sa.text('copied_from IS NOT NULL')}
    op.create_index('ix_messages_copied_from', 'messages', ['copied_from'], **copies_only)
    # A thread's copies, found without reading its other messages (a fork whose parent is gone).
    op.create_index('ix_messages_copies', 'messages', ['thread_id'], **copies_only)
    statements = SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else POSTGRES_STATEMENTS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    # Copies become plain rows again, each indexed (the promotion trigger indexes them).
    op.execute("UPDATE messages SET copied_from = NULL WHERE copied_from IS NOT NULL")
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("messages_original_deleted", "messages_fts_copy_promoted", "messages_fts_insert",
                        "messages_fts_delete", "messages_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute(f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN {_FTS_INSERT}; END")
        op.execute(f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN {_FTS_DELETE}; END")
        op.execute(
            f"CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, thread_id ON messages BEGIN {_FTS_DELETE}; {_FTS_INSERT}; END"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS messages_original_deleted ON messages")
        op.execute("DROP FUNCTION IF EXISTS memchat_original_deleted()")
        op.execute("DROP INDEX ix_messages_fulltext")
        op.execute("CREATE INDEX ix_messages_fulltext ON messages USING gin (to_tsvector('english', content))")
    op.drop_index('ix_messages_copies', table_name='messages')
    op.drop_index('ix_messages_copied_from', table_name='messages')
    op.execute("ALTER TABLE messages DROP COLUMN copied_from")
