"""group calls: where a circular hunt group starts next

Revision ID: 0005_group_calls
Revises: 0004_webauthn
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_group_calls"
down_revision = "0004_webauthn"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hunt_group_rotations",
        sa.Column(
            "hunt_group_id",
            sa.Integer(),
            sa.ForeignKey("hunt_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("last_user_id", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("hunt_group_rotations")
