"""nodes.api_url: where the other nodes reach a node's API (call control for a call it carries, docs/scale-out.md)

Revision ID: 0011_node_api_url
Revises: 0010_mwi_subscriptions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_node_api_url"
down_revision = "0010_mwi_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("api_url", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("api_url")
