"""call center calls: call-center queues in the shared store, so every node serves every queue (apps/groups.py)

Revision ID: 0013_call_center_calls
Revises: 0012_callbacks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_call_center_calls"
down_revision = "0012_callbacks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_center_calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_center_id", sa.Integer(), sa.ForeignKey("call_centers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("caller_number", sa.String(64), nullable=False),
        sa.Column("caller_name", sa.String(200), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("agent_user_id", sa.Integer(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(40), nullable=False),
    )
    op.create_index("ix_call_center_calls_node_id", "call_center_calls", ["node_id"])
    op.create_index("ix_call_center_calls_center_state", "call_center_calls", ["call_center_id", "state"])
    # One queue call per agent at a time, refused by the database itself: two nodes that claim the same agent at
    # once cannot both succeed (store/group_calls.py `claim_agent`).
    op.create_index(
        "ux_call_center_calls_one_per_agent",
        "call_center_calls",
        ["agent_user_id"],
        unique=True,
        sqlite_where=sa.text("state IN ('offering', 'connected')"),
        postgresql_where=sa.text("state IN ('offering', 'connected')"),
    )


def downgrade() -> None:
    op.drop_table("call_center_calls")
