"""Token counts per tokenizer, in their own table.

A count depends on the tokenizer, not the model, so counts move from `messages.token_count`
(whose tokenizer was not recorded, and which is dropped) to `message_tokens`, keyed by
tokenizer. Missing counts are computed when a turn first needs them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('token_count')

    op.create_table('message_tokens',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('tokenizer', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'tokenizer')
    )


def downgrade() -> None:
    op.drop_table('message_tokens')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_count', sa.INTEGER(), nullable=True))
