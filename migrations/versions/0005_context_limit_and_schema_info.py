"""A per-message limit on what later contexts send of it, and which memchat wrote the schema.

`messages.context_limit`: set on a reply far longer than the reply tokens its turn asked for
(a provider that ignored max_tokens); the reply is stored whole, and later contexts send its
first `context_limit` tokens with a note, so one runaway reply cannot crowd out every later
window. `schema_info`: the version of memchat that last migrated the database, so that an older
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
    op.create_table('schema_info',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('schema_info')
    op.execute("ALTER TABLE messages DROP COLUMN context_limit")
