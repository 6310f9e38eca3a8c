"""the storm limit counts a recipient's latest page messages from an index of their own

Revision ID: a3f1c9e2b7d4
Revises: 90b84b99e576
Create Date: 2026-12-04 04:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a3f1c9e2b7d4'
down_revision: str | None = '90b84b99e576'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# as services/alerts/models.py's MESSAGES_SENT (a migration keeps its own copy: the model may move on)
MESSAGES_SENT = "sent_at IS NOT NULL AND (message_id IS NULL OR message_id = id)"


def upgrade() -> None:
    # an abnormal flow's page no longer counts every page its recipient got in the minute (a
    # burst's thousands, each claim) but reads their latest messages, at most the limit's number
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_messages_sent',
                              ['recipient', 'channel', 'address', 'sent_at'], unique=False,
                              postgresql_where=sa.text(MESSAGES_SENT),
                              sqlite_where=sa.text(MESSAGES_SENT))


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_messages_sent')
