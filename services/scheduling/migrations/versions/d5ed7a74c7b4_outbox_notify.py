"""a commit that wrote the outbox notifies its relays (PostgreSQL LISTEN/NOTIFY)

Revision ID: d5ed7a74c7b4
Revises: d7f2b9e4a1c6
Create Date: 2026-12-02 03:00:00
"""
from collections.abc import Sequence

from alembic import op

from shared.migrations import create_outbox_notify, drop_outbox_notify

revision: str = 'd5ed7a74c7b4'
down_revision: str | None = 'd7f2b9e4a1c6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the relays of `hai worker` processes wake when an API commits an event, not at their poll
    create_outbox_notify(op.get_bind(), 'scheduling')


def downgrade() -> None:
    drop_outbox_notify(op.get_bind())
