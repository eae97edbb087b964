"""Recall by meaning: a thread may name an embedding model (`recall_embeddings`) whose vectors
re-rank what recall's words found, and `message_vectors` keeps each message's vector by model,
made when recall first needs it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('recall_embeddings', sa.String(length=200), nullable=True))
    op.create_table(
        'message_vectors',
        sa.Column('message_id', sa.Integer(), sa.ForeignKey('messages.id', ondelete='CASCADE'), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('vector', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('message_id', 'model'),
    )


def downgrade() -> None:
    op.drop_table('message_vectors')
    op.execute("ALTER TABLE threads DROP COLUMN recall_embeddings")
