"""A thread holds every item of an agent's conversation: `messages.kind` says which
(`message`, `function_call`, `function_call_output`, `reasoning`; every existing row is a
message), with the columns those kinds need (parts, call id, tool name, arguments, the
protocol's item id, provider data); images and files are `blobs`, one row per content; a
thread's `tool_outputs` says whether older tool outputs are masked in requests.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ADDED = ('kind', 'parts', 'call_id', 'name', 'arguments', 'item_id', 'provider_data')


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column(
        'messages', sa.Column('kind', sa.String(length=24), nullable=False, server_default='message')
    )
    op.add_column('messages', sa.Column('parts', sa.JSON(none_as_null=True), nullable=True))
    op.add_column('messages', sa.Column('call_id', sa.String(length=200), nullable=True))
    op.add_column('messages', sa.Column('name', sa.String(length=200), nullable=True))
    op.add_column('messages', sa.Column('arguments', sa.Text(), nullable=True))
    op.add_column('messages', sa.Column('item_id', sa.String(length=200), nullable=True))
    op.add_column('messages', sa.Column('provider_data', sa.JSON(none_as_null=True), nullable=True))
    op.add_column(
        'threads', sa.Column('tool_outputs', sa.String(length=8), nullable=False, server_default='mask')
    )
    op.create_table(
        'blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('media_type', sa.String(length=200), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('sha256'),
    )


def downgrade() -> None:
    op.drop_table('blobs')
    op.execute("ALTER TABLE threads DROP COLUMN tool_outputs")
    for column in reversed(ADDED):
        op.execute(f"ALTER TABLE messages DROP COLUMN {column}")
