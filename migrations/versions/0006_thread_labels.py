"""Labels on a thread: the `metadata` of an OpenAI conversation made through `memchat serve`
(up to 16 string pairs, stored as JSON, returned as given; memchat does not read them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('labels', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE threads DROP COLUMN labels")
