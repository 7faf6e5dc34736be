"""Message-summary subscriptions and unsolicited NOTIFYs across nodes (apps/mwi.py, docs/scale-out.md).

A subscription is a dialog held by one node (its NOTIFYs carry that dialog); the shared row says that the user's
phones subscribed somewhere, so no node sends that user unsolicited NOTIFYs. Rows count while their node's lease
runs (store/presence.py) and until they expire.

Unsolicited NOTIFYs (`mwi_unsolicited`) follow outbox events that every node reads; each event is announced by
one node only: the node that moves the `mwi.unsolicited` cursor past it with a compare-and-set.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.models import Event, MwiSubscription, Node, NotificationCursor

CURSOR = "mwi.unsolicited"


async def subscribed(session: AsyncSession, row_id: str, user_id: int, node_id: str, expires_at: datetime) -> None:
    """A new or refreshed subscription (the caller commits)."""
    row = await session.get(MwiSubscription, row_id)
    if row is None:
        session.add(MwiSubscription(id=row_id, user_id=user_id, node_id=node_id, expires_at=expires_at))
    else:
        row.expires_at = expires_at


async def ended(session: AsyncSession, row_id: str) -> None:
    await session.execute(delete(MwiSubscription).where(MwiSubscription.id == row_id))


async def anyone_subscribed(session: AsyncSession, user_id: int, now: datetime) -> bool:
    """Whether a phone of the user holds a live subscription on any live node."""
    row = (
        await session.execute(
            select(MwiSubscription.id)
            .join(Node, Node.node_id == MwiSubscription.node_id)
            .where(MwiSubscription.user_id == user_id, MwiSubscription.expires_at > now, Node.lease_until > now)
            .limit(1)
        )
    ).first()
    return row is not None


async def start_cursor(session: AsyncSession) -> None:
    """Make the cursor at the newest event if there is none (events before a first start are not announced)."""
    if (await session.execute(select(NotificationCursor.name).where(NotificationCursor.name == CURSOR))).first():
        return
    newest = (await session.execute(select(func.coalesce(func.max(Event.id), 0)))).scalar_one()
    session.add(NotificationCursor(name=CURSOR, last_event_id=int(newest)))
    try:
        await session.commit()
    except IntegrityError:  # another node made it at the same moment
        await session.rollback()


async def claim(session: AsyncSession, through: int) -> int | None:
    """Claim the events up to `through` for unsolicited NOTIFYs and commit: the id after which they are this
    node's (the claim covers the ids in (returned, through]), or None when another node claimed them first."""
    current = (
        await session.execute(select(NotificationCursor.last_event_id).where(NotificationCursor.name == CURSOR))
    ).scalar_one_or_none()
    if current is None or current >= through:
        return None
    moved = await session.execute(
        update(NotificationCursor)
        .where(NotificationCursor.name == CURSOR, NotificationCursor.last_event_id == current)
        .values(last_event_id=through)
    )
    await session.commit()
    return int(current) if getattr(moved, "rowcount", 0) else None
