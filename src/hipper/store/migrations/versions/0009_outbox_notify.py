"""outbox notify: on PostgreSQL, a commit that wrote outbox rows wakes every node (LISTEN hipper_events)

A statement-level trigger calls pg_notify, so every writer (the API, the call path's batch writer, the CLI, any
node) wakes the others without code of its own, and only once its transaction commits (NOTIFY is transactional;
identical notifications of one transaction are folded into one). The outbox stays the source of truth: a node
that missed a notification still finds the rows by its poll (api/state.py EventHub). SQLite has one process
per database and needs nothing.

Revision ID: 0009_outbox_notify
Revises: 0008_outbound_policies
"""

from __future__ import annotations

from alembic import op

revision = "0009_outbox_notify"
down_revision = "0008_outbound_policies"
branch_labels = None
depends_on = None

# hipper.store.events.CHANNEL (a migration keeps its own copy: it must not change when the code does).
CHANNEL = "hipper_events"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION hipper_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION hipper_events_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS hipper_events_notify()")
