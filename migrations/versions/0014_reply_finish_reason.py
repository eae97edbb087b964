"""Why a reply ended, when it matters: `messages.finish_reason` is `length` for a reply that
stopped at its turn's max_tokens, so reading it back (a stored response, a conversation's items,
an export) says it was cut there, as answering it did.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('messages', sa.Column('finish_reason', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE messages DROP COLUMN finish_reason")
