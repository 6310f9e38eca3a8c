"""patient transfers: the centre each transferred patient last moved to (and from)

Revision ID: e5a1c8d3f902
Revises: c7a9e3f15d20
Create Date: 2026-12-02 00:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5a1c8d3f902"
down_revision: str | None = "c7a9e3f15d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "patient_transfers",
        sa.Column("patient_mrn", sa.String(length=100), nullable=False),
        sa.Column("center", sa.String(length=100), nullable=False),
        sa.Column("from_center", sa.String(length=100), nullable=False),
        sa.Column("changed_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("patient_mrn", name=op.f("pk_patient_transfers")),
    )


def downgrade() -> None:
    op.drop_table("patient_transfers")
