"""notify: the outbox cursor of the notification dispatcher

Revision ID: 0003_notify
Revises: 0002_lists
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_notify"
down_revision = "0002_lists"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_cursors",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_cursors")
