"""listing embeddings, index change sequence, match feedback

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:39:07.869923
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "index_changes",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("listing_row_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_index_changes")),
    )
    with op.batch_alter_table("index_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_index_changes_listing_row_id"), ["listing_row_id"], unique=False
        )

    op.create_table(
        "listing_embeddings",
        sa.Column("listing_row_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=500), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["listing_row_id"],
            ["listings.row_id"],
            name=op.f("fk_listing_embeddings_listing_row_id_listings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("listing_row_id", name=op.f("pk_listing_embeddings")),
    )
    op.create_table(
        "match_feedback",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("listing_id", sa.Uuid(), nullable=False),
        sa.Column("counterpart_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["counterpart_id"],
            ["listings.id"],
            name=op.f("fk_match_feedback_counterpart_id_listings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listings.id"],
            name=op.f("fk_match_feedback_listing_id_listings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_match_feedback_member_id_members"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_match_feedback_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_feedback")),
        sa.UniqueConstraint(
            "organization_id",
            "listing_id",
            "counterpart_id",
            name=op.f("uq_match_feedback_organization_id_listing_id_counterpart_id"),
        ),
    )
    with op.batch_alter_table("match_feedback", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_match_feedback_counterpart_id"), ["counterpart_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_match_feedback_organization_id"), ["organization_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("match_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_match_feedback_organization_id"))
        batch_op.drop_index(batch_op.f("ix_match_feedback_counterpart_id"))

    op.drop_table("match_feedback")
    op.drop_table("listing_embeddings")
    with op.batch_alter_table("index_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_index_changes_listing_row_id"))

    op.drop_table("index_changes")
