"""webhook signing: a secret per on-call table, and the table that planned each page

Revision ID: 6cfd16d7ecc7
Revises: 73ab1bb6d35e
Create Date: 2026-12-01 15:30:00
"""
import base64
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '6cfd16d7ecc7'
down_revision: str | None = '73ab1bb6d35e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('oncall_schedules', sa.Column('webhook_secret', sa.String(length=120), nullable=True))
    op.add_column('notifications', sa.Column('oncall_center', sa.String(length=100), nullable=True))
    # every on-call table gets a secret, so that no page goes out unsigned; the on-call sets its
    # own (PUT) and tells the receivers
    schedules = sa.table('oncall_schedules', sa.column('center', sa.String),
                         sa.column('webhook_secret', sa.String))
    bind = op.get_bind()
    for (center,) in bind.execute(sa.select(schedules.c.center)).all():
        secret = 'whsec_' + base64.b64encode(secrets.token_bytes(32)).decode('ascii')
        bind.execute(schedules.update().where(schedules.c.center == center)
                     .values(webhook_secret=secret))


def downgrade() -> None:
    with op.batch_alter_table('notifications') as batch:
        batch.drop_column('oncall_center')
    with op.batch_alter_table('oncall_schedules') as batch:
        batch.drop_column('webhook_secret')
