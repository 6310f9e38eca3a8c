"""a commit that wrote the outbox notifies its relays (PostgreSQL LISTEN/NOTIFY)

Revision ID: 6c347e5bfe03
Revises: 99662be3ba1d
Create Date: 2026-12-02 03:00:00
"""
from collections.abc import Sequence

from alembic import op

from shared.migrations import create_outbox_notify, drop_outbox_notify

revision: str = '6c347e5bfe03'
down_revision: str | None = '99662be3ba1d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the relays of `hai worker` processes wake when an API commits an event, not at their poll
    create_outbox_notify(op.get_bind(), 'hl7_bridge')


def downgrade() -> None:
    drop_outbox_notify(op.get_bind())
