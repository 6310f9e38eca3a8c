"""a commit that wrote the outbox notifies its relays (PostgreSQL LISTEN/NOTIFY)

Revision ID: 90b84b99e576
Revises: e5a1c8d3f902
Create Date: 2026-12-02 03:00:00
"""
from collections.abc import Sequence

from alembic import op

from shared.migrations import create_outbox_notify, drop_outbox_notify

revision: str = '90b84b99e576'
down_revision: str | None = 'e5a1c8d3f902'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the relays of `hai worker` processes wake when an API commits an event, not at their poll
    create_outbox_notify(op.get_bind(), 'alerts')


def downgrade() -> None:
    drop_outbox_notify(op.get_bind())
