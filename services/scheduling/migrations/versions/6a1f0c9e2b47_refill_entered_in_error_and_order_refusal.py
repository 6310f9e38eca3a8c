"""refills entered in error (status, who, when, why) and the refusal of an appointment's order

Revision ID: 6a1f0c9e2b47
Revises: 5a1e7c0d2b94
Create Date: 2026-12-01 15:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '6a1f0c9e2b47'
down_revision: str | None = '5a1e7c0d2b94'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('refills', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=20), nullable=False,
                                      server_default=sa.text("'recorded'")))
        batch_op.add_column(sa.Column('voided_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('voided_at', shared.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('void_reason', sa.Text(), nullable=True))
        # a voided refill gives its appointment back: unique among recorded refills only
        batch_op.drop_constraint('uq_refills_appointment_id', type_='unique')
        batch_op.create_index('uq_refills_appointment_recorded', ['appointment_id'], unique=True,
                              postgresql_where=sa.text("status = 'recorded'"),
                              sqlite_where=sa.text("status = 'recorded'"))
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('order_refused_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('appointments', schema=None) as batch_op:
        batch_op.drop_column('order_refused_reason')
    with op.batch_alter_table('refills', schema=None) as batch_op:
        batch_op.drop_index('uq_refills_appointment_recorded')
        batch_op.create_unique_constraint('uq_refills_appointment_id', ['appointment_id'])
        batch_op.drop_column('void_reason')
        batch_op.drop_column('voided_at')
        batch_op.drop_column('voided_by')
        batch_op.drop_column('status')
