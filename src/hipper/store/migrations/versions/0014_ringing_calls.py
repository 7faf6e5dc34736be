"""ringing calls: an incoming call ringing a user has an `active_calls` row (not counted as busy), so any node lists
it and forwards its control to the node carrying it (docs/scale-out.md "Call control")

Revision ID: 0014_ringing_calls
Revises: 0013_call_center_calls
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_ringing_calls"
down_revision = "0013_call_center_calls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("active_calls") as batch:
        batch.add_column(sa.Column("ringing", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("active_calls") as batch:
        batch.drop_column("ringing")
