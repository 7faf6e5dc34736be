"""Who is on a call, in the shared store: one `active_calls` row per user on an answered call, tagged with the
node carrying the call, and one `nodes` row per live node with its lease (store/presence.py keeps both).

A row counts only while its node's lease runs: a node that dies (SIGKILL, power) leaves its rows behind, and
they stop making anyone busy once its lease has run out; any node's housekeeping then deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.models import ActiveCall, Node


@dataclass(frozen=True)
class CallJoined:
    """A user's call was answered on `node_id` (written through store/writer.py)."""

    id: str
    user_id: int
    call_id: str
    node_id: str
    started_at: datetime

    def values(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "call_id": self.call_id,
            "node_id": self.node_id,
            "started_at": self.started_at,
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
        Node.lease_until > bindparam("now"),
    )
    .limit(1)
)


async def renew_lease(session: AsyncSession, node_id: str, now: datetime, lease_until: datetime) -> bool:
    """Extend the node's lease (the caller commits); False when its row was gone (purged after the lease ran
    out, or never made): it is made again, and the node's rows written before count for nothing."""
    result = await session.execute(update(Node).where(Node.node_id == node_id).values(lease_until=lease_until))
    if getattr(result, "rowcount", 0):
        return True
    await session.execute(delete(ActiveCall).where(ActiveCall.node_id == node_id))
    session.add(Node(node_id=node_id, started_at=now, lease_until=lease_until))
    return False


async def purge_expired(session: AsyncSession, now: datetime) -> None:
    """Forget nodes whose lease ran out, and the calls they left behind (the caller commits)."""
    expired = select(Node.node_id).where(Node.lease_until <= now)
    await session.execute(delete(ActiveCall).where(ActiveCall.node_id.in_(expired)))
    await session.execute(delete(Node).where(Node.lease_until <= now))


async def leave(session: AsyncSession, node_id: str) -> None:
    """A node stops: its calls and its lease go (the caller commits)."""
    await session.execute(delete(ActiveCall).where(ActiveCall.node_id == node_id))
    await session.execute(delete(Node).where(Node.node_id == node_id))


async def rejoin(session: AsyncSession, node_id: str, joined: list[CallJoined]) -> None:
    """Write the node's current calls again (after its rows were purged while it stalled)."""
    if joined:
        session.add_all(ActiveCall(**row.values()) for row in joined)
