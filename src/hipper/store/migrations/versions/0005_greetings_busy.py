"""greetings: a busy greeting besides the no-answer one (at most one of each per user)

Revision ID: 0005_greetings
Revises: 0004_webauthn

The existing `active` column keeps its meaning for what callers heard until now (every hand-off): it becomes
the no-answer greeting, so users who chose a greeting keep hearing it everywhere until they choose a busy one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_greetings"
down_revision = "0004_webauthn"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("greetings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active_busy", sa.Boolean(), nullable=False, server_default=sa.false()))
    # As for `active` (0002_lists): the database itself refuses a second busy greeting, whatever the races.
    op.create_index(
        "ux_greetings_one_active_busy",
        "greetings",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("active_busy"),
        postgresql_where=sa.text("active_busy"),
    )


def downgrade() -> None:
    op.drop_index("ux_greetings_one_active_busy", table_name="greetings")
    with op.batch_alter_table("greetings", schema=None) as batch_op:
        batch_op.drop_column("active_busy")
