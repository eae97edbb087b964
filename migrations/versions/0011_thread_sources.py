"""Where an imported thread came from: `source` names the conversation in the history it was
imported from (an llm conversation, a ChatGPT conversation or branch, a line of an OpenAI JSONL
file), so importing the same history again finds it and makes no second copy. One thread a
source for each tenant (the operator's threads count as one tenant): a unique index, so two
imports running at once cannot both write it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UNIQUE_SOURCE = (
    "CREATE UNIQUE INDEX uq_threads_tenant_source ON threads (coalesce(tenant, ''), source) "
    "WHERE source IS NOT NULL"
)


def upgrade() -> None:
    # In place (no SQLite batch rebuild, which would drop the full-text triggers of 0004).
    op.add_column('threads', sa.Column('source', sa.String(length=300), nullable=True))
    op.execute(UNIQUE_SOURCE)


def downgrade() -> None:
    op.execute("DROP INDEX uq_threads_tenant_source")
    op.execute("ALTER TABLE threads DROP COLUMN source")
