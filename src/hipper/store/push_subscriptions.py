"""The browsers' Web Push subscriptions of a user (SPEC L, M4): one row per browser that allowed notifications."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.events import add_event
from hipper.store.models import PushSubscription


async def subscribe(session: AsyncSession, user_id: int, endpoint: str, p256dh: str, auth: str) -> PushSubscription:
    """Store the browser's subscription for this user (the caller commits).

    The endpoint names one browser profile. If it is already stored, for this user or another, it now belongs
    to this user with the keys just given: whoever registers a browser last is the one logged in there, and the
    previous user must stop getting their callers' numbers on a device that is no longer theirs. Taking it over
    needs the endpoint URL itself, which only that browser knows.
    """
    row = (await session.execute(select(PushSubscription).where(PushSubscription.endpoint == endpoint))).scalar()
    if row is None:
        row = PushSubscription(
            user_id=user_id, endpoint=endpoint, p256dh=p256dh, auth=auth, created_at=datetime.now(UTC)
        )
        session.add(row)
    else:
        if row.user_id != user_id:
            add_event(session, row.user_id, "push_subscription.deleted", {"id": row.id})
        row.user_id = user_id
        row.p256dh = p256dh
        row.auth = auth
    await session.flush()
    add_event(session, user_id, "push_subscription.added", {"id": row.id})
    return row


async def list_for(session: AsyncSession, user_id: int) -> list[PushSubscription]:
    result = await session.execute(
        select(PushSubscription).where(PushSubscription.user_id == user_id).order_by(PushSubscription.id)
    )
    return list(result.scalars())


async def unsubscribe(
    session: AsyncSession, user_id: int, *, subscription_id: int | None = None, endpoint: str | None = None
) -> bool:
    """Delete the user's subscription by id or endpoint; False when there is no such one of theirs."""
    query = delete(PushSubscription).where(PushSubscription.user_id == user_id)
    if subscription_id is not None:
        query = query.where(PushSubscription.id == subscription_id)
    if endpoint is not None:
        query = query.where(PushSubscription.endpoint == endpoint)
    removed = list((await session.execute(query.returning(PushSubscription.id))).scalars())
    for removed_id in removed:
        add_event(session, user_id, "push_subscription.deleted", {"id": removed_id})
    return bool(removed)


async def forget_gone(session: AsyncSession, subscription_id: int, endpoint: str) -> None:
    """Drop a subscription the push service answered 404/410 for (RFC 8030 §7.3: expired or unsubscribed).

    Matched on id and endpoint: the row was read before the send, and only that endpoint is known to be gone.
    The caller commits.
    """
    result = await session.execute(
        delete(PushSubscription)
        .where(PushSubscription.id == subscription_id, PushSubscription.endpoint == endpoint)
        .returning(PushSubscription.user_id)
    )
    for user_id in result.scalars():
        add_event(session, user_id, "push_subscription.deleted", {"id": subscription_id, "reason": "gone"})
