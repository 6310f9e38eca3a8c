"""the due time of a refill's appointment on the refill (the registry's hours overdue without a
join), the registry's index of recorded refills by month and centre (PostgreSQL), and one
centre's worklist index

Revision ID: d7f2b9e4a1c6
Revises: c3e8a1f5d902
Create Date: 2026-12-02 00:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = 'd7f2b9e4a1c6'
down_revision: str | None = 'c3e8a1f5d902'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('refills', sa.Column('appointment_due_at', shared.db.UTCDateTime(timezone=True),
                                       nullable=True))
    # the refills recorded before: their appointment's due time (an appointment's due time
    # does not change once a refill completed it); about a minute per million refills
    op.execute("UPDATE refills SET appointment_due_at = (SELECT a.due_at FROM appointments a "
               "WHERE a.id = refills.appointment_id) WHERE appointment_id IS NOT NULL")
    op.create_index('ix_appointments_center_due', 'appointments', ['center', 'due_at', 'id'],
                    unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_refills_month_center', 'refills',
                        [sa.text("date_trunc('month', timezone('UTC', performed_at))"), 'center'],
                        unique=False,
                        postgresql_include=['performed_at', 'appointment_due_at',
                                            'outside_window', 'flow_deviation_pct'],
                        postgresql_where=sa.text("status = 'recorded'"))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_refills_month_center', table_name='refills')
    op.drop_index('ix_appointments_center_due', table_name='appointments')
    op.drop_column('refills', 'appointment_due_at')
