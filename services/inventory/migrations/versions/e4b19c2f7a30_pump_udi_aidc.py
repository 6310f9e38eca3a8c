"""the scanned UDI carrier of a pump (FHIR Device.udiCarrier.carrierAIDC)

Revision ID: e4b19c2f7a30
Revises: c07103e57d96
Create Date: 2026-12-01 17:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e4b19c2f7a30'
down_revision: str | None = 'c07103e57d96'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # pumps registered before this revision have no scanned carrier on record: null
    with op.batch_alter_table('pumps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('udi_aidc', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('pumps', schema=None) as batch_op:
        batch_op.drop_column('udi_aidc')
