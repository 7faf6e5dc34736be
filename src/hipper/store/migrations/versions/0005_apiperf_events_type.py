"""apiperf: index the outbox by event type

Revision ID: 0005_apiperf_events_type
Revises: 0004_webauthn

Readers that follow a few event types from a cursor (the device-credential cache in `hipper serve`, MWI) ask
for `type IN (…) AND id > cursor`. Their cursor only moves when a row of their types turns up, so without this
index each of those reads scanned every event written since the process started — a growing cost on every
settings change, and MWI asks three times a second (docs/performance.md).
"""

from __future__ import annotations

from alembic import op

revision = "0005_apiperf_events_type"
down_revision = "0004_webauthn"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_type_id", "events", ["type", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_type_id", table_name="events")
