"""active calls, node leases and armed access-number calls: call state every node shares

Revision ID: 0007_active_calls
Revises: 0006_one_head
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_active_calls"
down_revision = "0006_one_head"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(100), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_nodes_lease_until", "nodes", ["lease_until"])
    op.create_table(
        "active_calls",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_active_calls_user_id", "active_calls", ["user_id"])
    op.create_index("ix_active_calls_node_id", "active_calls", ["node_id"])
    op.create_table(
        "call_access_arms",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("identity", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("call_access_arms")
    op.drop_table("active_calls")
    op.drop_table("nodes")
