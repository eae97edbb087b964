"""A per-thread history version: raised by the database itself whenever a message's status
changes (a trigger, so no write path can forget it) and by every append. A process that keeps
a thread's recent history in memory (a warm `memchat serve`) knows from this one number,
read by primary key, whether its copy is still exact, and a turn's commit checks it instead of
counting messages.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SQLITE_TRIGGER = (
    "CREATE TRIGGER messages_history_version AFTER UPDATE OF status ON messages "
    "WHEN old.status IS NOT new.status BEGIN "
    "UPDATE threads SET history_version = history_version + 1 WHERE id = new.thread_id; END"
)
POSTGRES_FUNCTION = (
    "CREATE FUNCTION memchat_history_changed() RETURNS trigger AS $$ BEGIN "
    "UPDATE threads SET history_version = history_version + 1 WHERE id = NEW.thread_id; "
    "RETURN NULL; END $$ LANGUAGE plpgsql"
)
POSTGRES_TRIGGER = (
    "CREATE TRIGGER messages_history_version AFTER UPDATE OF status ON messages "
    "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION memchat_history_changed()"
)


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('history_version', sa.Integer(), nullable=False, server_default='0'))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS messages_history_version" + ("" if op.get_bind().dialect.name == "sqlite" else " ON messages"))
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS memchat_history_changed()")
    op.execute("ALTER TABLE threads DROP COLUMN history_version")
