"""merge the three 0005 revisions (written side by side) into one head again

Revision ID: 0006_one_head
Revises: 0005_apiperf_events_type, 0005_greetings, 0005_group_calls

No schema change: the next migration has one revision to follow (`alembic upgrade head` works again).
"""

from __future__ import annotations

revision = "0006_one_head"
down_revision = ("0005_apiperf_events_type", "0005_greetings", "0005_group_calls")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
