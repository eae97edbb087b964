"""API keys for `memchat serve` and the tenant each thread belongs to.

`api_keys`: one row per key, by name, holding only the key's SHA-256 (the key is shown once);
revoked keys stay so a name is never reused. `threads.tenant`: the name of the key whose
conversation it is (over HTTP only that key sees it); NULL for threads made by the operator.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('shown', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name'),
    sa.UniqueConstraint('key_hash')
    )
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.create_index(op.f('ix_threads_tenant'), 'threads', ['tenant'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_threads_tenant'), table_name='threads')
    op.execute("ALTER TABLE threads DROP COLUMN tenant")
    op.drop_table('api_keys')
