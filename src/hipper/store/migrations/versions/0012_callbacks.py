"""callbacks: callbacks under way, per node, in the shared store (apps/click_to_dial.py, docs/scale-out.md)

Revision ID: 0012_callbacks
Revises: 0011_node_api_url
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_callbacks"
down_revision = "0011_node_api_url"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ringing", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_callbacks_user_id", "callbacks", ["user_id"])
    op.create_index("ix_callbacks_node_id", "callbacks", ["node_id"])
    # One ringing callback per user across the nodes: the second one's INSERT fails (409 callback_under_way).
    op.create_index(
        "ix_callbacks_one_ringing",
        "callbacks",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("ringing"),
        postgresql_where=sa.text("ringing"),
    )


def downgrade() -> None:
    op.drop_table("callbacks")
