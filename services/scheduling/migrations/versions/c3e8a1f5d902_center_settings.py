"""per-centre settings (time zone, refill and flow thresholds, escalation and ack times) and
the registry's report snapshots

Revision ID: c3e8a1f5d902
Revises: c4e8a2d7f301
Create Date: 2026-12-01 20:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'c3e8a1f5d902'
down_revision: str | None = 'c4e8a2d7f301'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'center_settings',
        sa.Column('center', sa.String(length=100), nullable=False),
        sa.Column('time_zone', sa.String(length=64), nullable=True),
        sa.Column('refill_interval_days', sa.Integer(), nullable=True),
        sa.Column('refill_window_days', sa.Integer(), nullable=True),
        sa.Column('due_soon_hours', sa.Integer(), nullable=True),
        sa.Column('near_empty_hours', sa.Integer(), nullable=True),
        sa.Column('flow_warning_pct', sa.Float(), nullable=True),
        sa.Column('flow_critical_pct', sa.Float(), nullable=True),
        sa.Column('escalation_delay_seconds', sa.Integer(), nullable=True),
        sa.Column('ack_timeout_seconds', sa.Integer(), nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('center', name=op.f('pk_center_settings')),
    )
    op.create_table(
        'report_snapshots',
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('computed_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('body', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_report_snapshots')),
    )


def downgrade() -> None:
    op.drop_table('report_snapshots')
    op.drop_table('center_settings')
