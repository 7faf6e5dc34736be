"""mwi subscriptions: message-summary subscriptions in the shared store, per node (apps/mwi.py)

Revision ID: 0010_mwi_subscriptions
Revises: 0009_outbox_notify
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_mwi_subscriptions"
down_revision = "0009_outbox_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mwi_subscriptions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mwi_subscriptions_user_id", "mwi_subscriptions", ["user_id"])
    op.create_index("ix_mwi_subscriptions_node_id", "mwi_subscriptions", ["node_id"])


def downgrade() -> None:
    op.drop_table("mwi_subscriptions")
