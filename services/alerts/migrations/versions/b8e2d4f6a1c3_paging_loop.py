"""paging loop: fallbacks and read status per page, re-notify and snooze, storm grouping

Revision ID: b8e2d4f6a1c3
Revises: d4f9b2c6e813
Create Date: 2026-12-01 20:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b8e2d4f6a1c3"
down_revision: str | None = "d4f9b2c6e813"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("fallbacks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("sent_route", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("delivered_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("seen_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("acknowledged_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("message_id", sa.String(length=36), nullable=True))
    op.create_index("ix_notifications_recipient_sent", "notifications", ["recipient", "sent_at"])
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("wake_at", UTC_DATETIME, nullable=True))
    op.create_index("ix_alerts_wake_due", "alerts", ["wake_at"],
                    postgresql_where=sa.text("wake_at IS NOT NULL"),
                    sqlite_where=sa.text("wake_at IS NOT NULL"))
    op.create_index("ix_alerts_silenced", "alerts", ["silenced_by"],
                    postgresql_where=sa.text("silenced_by IS NOT NULL"),
                    sqlite_where=sa.text("silenced_by IS NOT NULL"))
    with op.batch_alter_table("oncall_schedules") as batch:
        batch.add_column(sa.Column("ack_timeout_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oncall_schedules") as batch:
        batch.drop_column("ack_timeout_seconds")
    op.drop_index("ix_alerts_silenced", table_name="alerts")
    op.drop_index("ix_alerts_wake_due", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("wake_at")
    op.drop_index("ix_notifications_recipient_sent", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        for column in ("message_id", "acknowledged_at", "seen_at", "delivered_at", "sent_route",
                       "fallbacks"):
            batch.drop_column(column)
