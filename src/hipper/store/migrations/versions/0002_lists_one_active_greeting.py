"""lists: at most one active greeting per user

Revision ID: 0002_lists
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_lists"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A partial unique index (SQLite and PostgreSQL both have them): the database itself refuses a second
    # active greeting, whatever races the application has.
    op.create_index(
        "ux_greetings_one_active",
        "greetings",
        ["user_id"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index("ux_greetings_one_active", table_name="greetings")
