"""The outbox: events are rows written in the change's own transaction; publishing happens after commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import bindparam, delete, func, insert, make_url, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.moments import aware
from hipper.store.models import Event, NotificationCursor

# On PostgreSQL every commit that wrote outbox rows notifies this channel (migration 0009's trigger).
CHANNEL = "hipper_events"
# The newest outbox event's id: where a follower of the outbox starts, and what a poll compares (built once).
NEWEST_EVENT = select(func.max(Event.id))


def add_event(
    session: AsyncSession, user_id: int | None, type_: str, payload: dict[str, Any], company_id: int | None = None
) -> None:
    session.add(
        Event(user_id=user_id, company_id=company_id, type=type_, payload=payload, created_at=datetime.now(UTC))
    )


EVENT_INSERT = insert(Event).values(
    user_id=bindparam("user_id"),
    company_id=bindparam("company_id"),
    type=bindparam("type"),
    payload=bindparam("payload", type_=Event.__table__.c.payload.type),
    created_at=bindparam("created_at", type_=Event.__table__.c.created_at.type),
)


async def insert_event(
    session: AsyncSession,
    user_id: int | None,
    type_: str,
    payload: dict[str, Any],
    created_at: datetime,
    company_id: int | None = None,
) -> None:
    """`add_event`, written now with one prepared Core insert instead of at the next flush (for hot paths).

    The row is in the session's transaction like `add_event`'s, so it commits or rolls back with the change.
    """
    await session.execute(
        EVENT_INSERT,
        {"user_id": user_id, "company_id": company_id, "type": type_, "payload": payload, "created_at": created_at},
    )


# --- retention ------------------------------------------------------------------------------------------------
#
# The outbox would grow for ever: every settings change and every call writes to it. Its readers only need the
# recent past — live streams and the call path's caches read rows seconds after their commit, a browser that
# reconnects asks for what it missed while it was away — so rows older than `events_retention_days` are deleted
# in batches (`purge`), from the oldest id up. Two rules keep that safe:
#
# - Never past a reader's cursor: a row in `notification_cursors` (the notifier's position) holds the purge back,
#   so an event is never deleted before the notifier has claimed it, however long the notifier was away.
# - Never the newest row: SQLite hands out max(id) + 1 (the table has no AUTOINCREMENT), so an emptied table
#   would give ids out again that clients and cursors have already seen.
#
# Deleting is always a prefix in id order, and how far it got is kept as a row of its own in
# `notification_cursors` (`PURGED`): every event with an id up to that value is gone. A live-event client that
# resumes from an older id may have missed events and is told so (api/routers/events.py).

PURGED = "outbox.purged"
PURGE_BATCH = 1000


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    # Every event with an id up to this one is gone (0: none ever was).
    purged_through: int
    # The oldest reader's cursor when it is what stopped the purge (events older than the retention remain).
    held_back_by: str | None = None


async def purged_through(session: AsyncSession) -> int:
    """Every event with an id up to this one has been deleted by the retention (0: none)."""
    value = (
        await session.execute(select(NotificationCursor.last_event_id).where(NotificationCursor.name == PURGED))
    ).scalar_one_or_none()
    return int(value or 0)


async def _ensure_watermark(session: AsyncSession) -> None:
    if (
        await session.execute(select(NotificationCursor.name).where(NotificationCursor.name == PURGED))
    ).scalar_one_or_none() is None:
        session.add(NotificationCursor(name=PURGED, last_event_id=0))
        try:
            await session.commit()
        except IntegrityError:  # another node (or a CLI run) made it at the same moment
            await session.rollback()


async def purge(
    session: AsyncSession,
    older_than: timedelta,
    *,
    batch: int = PURGE_BATCH,
    now: datetime | None = None,
) -> PurgeResult:
    """Delete the events older than `older_than` (see the rules above), `batch` rows per transaction.

    Commits each batch itself, so a big backlog never holds one long transaction or lock; another node running
    the same purge at once only finds less to do.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    await _ensure_watermark(session)
    # Read from past what is already gone: on PostgreSQL the deleted rows stay in the index until a vacuum, and
    # each batch starting from the lowest id would step over all of them again.
    floor = await purged_through(session)
    deleted = 0
    while True:
        newest = (await session.execute(select(func.max(Event.id)))).scalar()
        if newest is None:
            return PurgeResult(deleted, await purged_through(session))
        limit = int(newest) - 1
        reader = (
            await session.execute(
                select(NotificationCursor.name, NotificationCursor.last_event_id)
                .where(NotificationCursor.name != PURGED)
                .order_by(NotificationCursor.last_event_id)
                .limit(1)
            )
        ).first()
        if reader is not None and reader.last_event_id < limit:
            limit = int(reader.last_event_id)
        rows = (
            await session.execute(
                select(Event.id, Event.created_at)
                .where(Event.id > floor, Event.id <= limit)
                .order_by(Event.id)
                .limit(batch)
            )
        ).all()
        # The prefix of old rows: stop at the first younger one (ids are handed out a moment before the commit,
        # so their times are nearly, not strictly, in order; a younger row is never deleted).
        old = 0
        while old < len(rows) and aware(rows[old].created_at) < cutoff:
            old += 1
        if old:
            boundary = int(rows[old - 1].id)
            result = await session.execute(delete(Event).where(Event.id <= boundary))
            floor = boundary
            deleted += int(getattr(result, "rowcount", 0) or 0)
            await session.execute(
                update(NotificationCursor)
                .where(NotificationCursor.name == PURGED, NotificationCursor.last_event_id < boundary)
                .values(last_event_id=boundary)
            )
            await session.commit()
        if old < len(rows) or len(rows) < batch:
            break
    held_back_by = None
    if reader is not None and old == len(rows):
        # Ran out of rows at the reader's cursor: say so when the next event is one the retention wanted gone.
        following = (
            await session.execute(select(Event.created_at).where(Event.id > limit).order_by(Event.id).limit(1))
        ).scalar()
        if following is not None and aware(following) < cutoff and limit < int(newest) - 1:
            held_back_by = str(reader.name)
    return PurgeResult(deleted, await purged_through(session), held_back_by)


# --- cross-node wake-ups ----------------------------------------------------------------------------------------


def listen_dsn(database_url: str) -> str | None:
    """Where to LISTEN for new outbox rows: the database's asyncpg address on PostgreSQL, None on SQLite (one
    process writes it: the committing code wakes its own listeners)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(dsn: str, woken: Callable[[], None]) -> None:
    """Call `woken` after every commit (by any node) that wrote outbox rows, until the connection is lost.

    Once listening, `woken` is called once more: rows committed before the LISTEN took effect are looked for too.
    Returns when the connection ends (the caller reconnects); connection errors are raised."""
    connection = await asyncpg.connect(dsn)
    try:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(CHANNEL, lambda *_notification: woken())
        woken()
        await lost.wait()
    finally:
        with contextlib.suppress(Exception):
            await connection.close(timeout=2)
