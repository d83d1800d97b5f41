"""sentence vectors stored with each listing embedding

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 16:40:00.000000

Rows embedded before this revision have none: their evidence is computed at query time until
the listing is next written or `marketplace reindex` runs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("listing_embeddings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sentence_vectors", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("listing_embeddings", schema=None) as batch_op:
        batch_op.drop_column("sentence_vectors")
