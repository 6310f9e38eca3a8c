"""alerts' copy of the centre settings it applies (flow bands, escalation, ack timeout)

Revision ID: d4f9b2c6e813
Revises: 5f3c9a1d2b7e
Create Date: 2026-12-01 20:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'd4f9b2c6e813'
down_revision: str | None = '5f3c9a1d2b7e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'center_settings',
        sa.Column('center', sa.String(length=100), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('flow_warning_pct', sa.Float(), nullable=True),
        sa.Column('flow_critical_pct', sa.Float(), nullable=True),
        sa.Column('escalation_delay_seconds', sa.Integer(), nullable=True),
        sa.Column('ack_timeout_seconds', sa.Integer(), nullable=True),
        sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('center', name=op.f('pk_center_settings')),
    )


def downgrade() -> None:
    op.drop_table('center_settings')
