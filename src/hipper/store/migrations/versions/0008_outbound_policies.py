"""outbound policies: call barring and concurrent-call limits per company and per user (toll fraud)

Revision ID: 0008_outbound_policies
Revises: 0007_active_calls
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_outbound_policies"
down_revision = "0007_active_calls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_policies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "company_id", sa.Integer(), sa.ForeignKey("companies.id", ondelete="CASCADE"), nullable=True, unique=True
        ),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, unique=True),
        sa.Column("barred", sa.JSON(), nullable=False),
        sa.Column("barred_prefixes", sa.JSON(), nullable=False),
        sa.Column("max_calls", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("outbound_policies")
