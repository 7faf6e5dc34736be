"""Who is on a call, in the shared store: one `active_calls` row per user on an answered call (or on an incoming
call still ringing them, `ringing`: listed and controlled through any node, but not busy), tagged with the node
carrying the call, and one `nodes` row per live node with its lease (store/presence.py keeps both); and the
callbacks under way (`callbacks`, kept by apps/click_to_dial.py).

A row counts only while its node's lease runs: a node that dies (SIGKILL, power) leaves its rows behind, and
they stop making anyone busy once its lease has run out; any node's housekeeping then deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.group_calls import lose_queued_calls
from hipper.store.models import ActiveCall, LiveCallback, MwiSubscription, Node


@dataclass(frozen=True)
class CallJoined:
    """A user's call was answered on `node_id` — or, `ringing`, rings them there (written through
    store/writer.py)."""

    id: str
    user_id: int
    call_id: str
    node_id: str
    started_at: datetime
    ringing: bool = False

    def values(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "call_id": self.call_id,
            "node_id": self.node_id,
            "started_at": self.started_at,
            "ringing": self.ringing,
        }


@dataclass(frozen=True)
class CallLeft:
    """The call of `CallJoined` with this id ended (written through store/writer.py)."""

    id: str


# Whether the user is on a call carried by another live node; built once with bound parameters (the call path
# reads it for every routed call, store/db.py's `CallPathReads`).
ON_CALL_ELSEWHERE = (
    select(ActiveCall.id)
    .join(Node, Node.node_id == ActiveCall.node_id)
    .where(
        ActiveCall.user_id == bindparam("user_id"),
        ActiveCall.node_id != bindparam("node_id"),
        ActiveCall.ringing.is_(False),  # a call still ringing them does not make them busy
        Node.lease_until > bindparam("now"),
    )
    .limit(1)
)


async def renew_lease(
    session: AsyncSession, node_id: str, now: datetime, lease_until: datetime, api_url: str | None = None
) -> bool:
    """Extend the node's lease (the caller commits); False when its row was gone (purged after the lease ran
    out, or never made): it is made again, and the node's rows written before count for nothing."""
    result = await session.execute(
        update(Node).where(Node.node_id == node_id).values(lease_until=lease_until, api_url=api_url)
    )
    if getattr(result, "rowcount", 0):
        return True
    await session.execute(delete(ActiveCall).where(ActiveCall.node_id == node_id))
    session.add(Node(node_id=node_id, started_at=now, lease_until=lease_until, api_url=api_url))
    return False


async def calls_elsewhere(session: AsyncSession, user_id: int, node_id: str, now: datetime) -> list[tuple[str, str]]:
    """The user's answered and ringing calls and callbacks under way on other live nodes that take forwarded
    requests: (call id, the node's API URL)."""
    answered = (
        select(ActiveCall.call_id, Node.api_url)
        .join(Node, Node.node_id == ActiveCall.node_id)
        .where(ActiveCall.user_id == user_id, ActiveCall.node_id != node_id)
    )
    callbacks = (
        select(LiveCallback.id, Node.api_url)
        .join(Node, Node.node_id == LiveCallback.node_id)
        .where(LiveCallback.user_id == user_id, LiveCallback.node_id != node_id)
    )
    found = []
    for query in (answered, callbacks):
        rows = await session.execute(query.where(Node.lease_until > now, Node.api_url.is_not(None)))
        found += [(call_id, api_url) for call_id, api_url in rows.all() if api_url]
    return found


async def claim_callback(session: AsyncSession, callback_id: str, user_id: int, node_id: str, now: datetime) -> bool:
    """Write the user's new callback as ringing and commit; False (nothing written) when another of theirs rings,
    on any node: the unique index over ringing rows decides, so two nodes asked at once never both ring."""
    # A ringing row a dead node left would hold the user until the lease housekeeping purges it.
    dead = select(Node.node_id).where(Node.lease_until <= now)
    await session.execute(delete(LiveCallback).where(LiveCallback.user_id == user_id, LiveCallback.node_id.in_(dead)))
    session.add(LiveCallback(id=callback_id, user_id=user_id, node_id=node_id, started_at=now, ringing=True))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def callback_answered(session: AsyncSession, callback_id: str) -> None:
    """Both ends answered: the user may place another callback (the caller commits)."""
    await session.execute(update(LiveCallback).where(LiveCallback.id == callback_id).values(ringing=False))


async def callback_ended(session: AsyncSession, callback_id: str) -> None:
    await session.execute(delete(LiveCallback).where(LiveCallback.id == callback_id))


async def purge_expired(session: AsyncSession, now: datetime) -> None:
    """Forget nodes whose lease ran out, and the calls they left behind (the caller commits)."""
    expired = select(Node.node_id).where(Node.lease_until <= now)
    # Their callers waiting in call-center queues are gone with their media: written off once, with a reason.
    await lose_queued_calls(session, expired, now)
    await session.execute(delete(ActiveCall).where(ActiveCall.node_id.in_(expired)))
    await session.execute(delete(LiveCallback).where(LiveCallback.node_id.in_(expired)))
    # The MWI subscriptions they held, and any that ran out unrenewed (store/mwi_subscriptions.py).
    await session.execute(
        delete(MwiSubscription).where(MwiSubscription.node_id.in_(expired) | (MwiSubscription.expires_at <= now))
    )
    await session.execute(delete(Node).where(Node.lease_until <= now))


async def leave(session: AsyncSession, node_id: str) -> None:
    """A node stops: its calls, its callbacks, its MWI subscriptions and its lease go (the caller commits). Queued
    calls still on it (an earlier process with this node id died) are written off."""
    await lose_queued_calls(session, [node_id], datetime.now(UTC))
    await session.execute(delete(ActiveCall).where(ActiveCall.node_id == node_id))
    await session.execute(delete(LiveCallback).where(LiveCallback.node_id == node_id))
    await session.execute(delete(MwiSubscription).where(MwiSubscription.node_id == node_id))
    await session.execute(delete(Node).where(Node.node_id == node_id))


async def rejoin(session: AsyncSession, node_id: str, joined: list[CallJoined]) -> None:
    """Write the node's current calls again (after its rows were purged while it stalled)."""
    if joined:
        session.add_all(ActiveCall(**row.values()) for row in joined)
