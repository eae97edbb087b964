"""Where a forked thread came from: the thread (its id, kept even once that thread is deleted)
and the last message position copied from it (`memchat fork`, `memchat edit`, an older
`previous_response_id` over HTTP).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('forked_from', sa.String(length=32), nullable=True))
    op.add_column('threads', sa.Column('forked_at', sa.Integer(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE threads DROP COLUMN forked_at")
    op.execute("ALTER TABLE threads DROP COLUMN forked_from")
