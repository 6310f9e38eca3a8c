"""flow surveillance: the implanted pump's lot, and the running sums of each pump and lot

Revision ID: c4e8a2d7f301
Revises: b8d2f4a61c05
Create Date: 2026-12-01 20:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = 'c4e8a2d7f301'
down_revision: str | None = 'b8d2f4a61c05'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('implanted_pumps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lot_number', sa.String(length=100), nullable=True))
    op.create_table(
        'flow_pump_stats',
        sa.Column('serial_number', sa.String(length=100), nullable=False),
        sa.Column('model_code', sa.String(length=50), nullable=False),
        sa.Column('lot_number', sa.String(length=100), nullable=False),
        sa.Column('readings', sa.Integer(), nullable=False),
        sa.Column('sum_deviation_pct', sa.Float(), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('serial_number', name=op.f('pk_flow_pump_stats')),
    )
    op.create_index('ix_flow_pump_stats_lot', 'flow_pump_stats', ['model_code', 'lot_number'])
    op.create_table(
        'flow_lot_stats',
        sa.Column('model_code', sa.String(length=50), nullable=False),
        sa.Column('lot_number', sa.String(length=100), nullable=False),
        sa.Column('pumps', sa.Integer(), nullable=False),
        sa.Column('sum_mean_pct', sa.Float(), nullable=False),
        sa.Column('sum_mean_sq', sa.Float(), nullable=False),
        sa.Column('readings', sa.Integer(), nullable=False),
        sa.Column('drifting', sa.Boolean(), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('model_code', 'lot_number', name=op.f('pk_flow_lot_stats')),
    )


def downgrade() -> None:
    op.drop_table('flow_lot_stats')
    op.drop_index('ix_flow_pump_stats_lot', table_name='flow_pump_stats')
    op.drop_table('flow_pump_stats')
    with op.batch_alter_table('implanted_pumps', schema=None) as batch_op:
        batch_op.drop_column('lot_number')
