"""keyset indexes for the FHIR Observation search (refills by time, per patient and overall)

Revision ID: b8d2f4a61c05
Revises: a7c3e1f09b24
Create Date: 2026-12-01 17:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'b8d2f4a61c05'
down_revision: str | None = 'a7c3e1f09b24'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('refills', schema=None) as batch_op:
        batch_op.create_index('ix_refills_patient_performed',
                              ['patient_mrn', 'performed_at', 'id'], unique=False)
        batch_op.create_index('ix_refills_performed', ['performed_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('refills', schema=None) as batch_op:
        batch_op.drop_index('ix_refills_performed')
        batch_op.drop_index('ix_refills_patient_performed')
