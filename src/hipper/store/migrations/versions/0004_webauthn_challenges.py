"""webauthn: pending passkey challenges per login session (single use, short-lived)

Revision ID: 0004_webauthn
Revises: 0003_notify
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_webauthn"
down_revision = "0003_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webauthn_challenges",
        sa.Column(
            "auth_session_id",
            sa.Integer(),
            sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("purpose", sa.String(20), primary_key=True),
        sa.Column("challenge", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webauthn_challenges")
