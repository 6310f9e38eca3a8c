"""therapy holds: a paused therapy holds its pump's warnings; alerts.held_by_therapy

Revision ID: c7a9e3f15d20
Revises: b8e2d4f6a1c3
Create Date: 2026-12-01 21:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7a9e3f15d20"
down_revision: str | None = "b8e2d4f6a1c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "therapy_holds",
        sa.Column("therapy_id", sa.String(length=36), nullable=False),
        sa.Column("pump_serial", sa.String(length=100), nullable=False),
        sa.Column("patient_mrn", sa.String(length=100), nullable=False),
        sa.Column("center", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("therapy_id", name=op.f("pk_therapy_holds")),
    )
    op.create_index(op.f("ix_therapy_holds_pump_serial"), "therapy_holds", ["pump_serial"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("held_by_therapy", sa.String(length=36), nullable=True))
    op.create_index("ix_alerts_held_by_therapy", "alerts", ["held_by_therapy"],
                    postgresql_where=sa.text("held_by_therapy IS NOT NULL"),
                    sqlite_where=sa.text("held_by_therapy IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_alerts_held_by_therapy", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("held_by_therapy")
    op.drop_index(op.f("ix_therapy_holds_pump_serial"), table_name="therapy_holds")
    op.drop_table("therapy_holds")
