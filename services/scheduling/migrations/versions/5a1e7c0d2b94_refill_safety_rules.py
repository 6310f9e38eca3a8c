"""refill safety rules: appointments.due_basis; deliveries.administered_at and refill_id

Revision ID: 5a1e7c0d2b94
Revises: d15440fd4d35
Create Date: 2026-12-01 15:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '5a1e7c0d2b94'
down_revision: str | None = 'd15440fd4d35'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing appointments were all due by the interval: the server default says so
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_basis', sa.String(length=20), nullable=False,
                                      server_default='interval'))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('administered_at', shared.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('refill_id', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('refill_id')
        batch_op.drop_column('administered_at')
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_column('due_basis')
