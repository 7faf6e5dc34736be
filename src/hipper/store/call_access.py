"""Calls "via the exchange" the app announced (SPEC D9; apps/click_to_dial.py), kept in the database so that the
node whose API armed the access number and the node the user's mobile call arrives on need not be the same.

One row per user (a newer announcement replaces the earlier one), taken by the first call that claims it: the
claim deletes the row and returns it in one statement, so two nodes never both connect the same announcement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Insert, Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.moments import aware
from hipper.domain.outgoing import CallerIdentity
from hipper.store.models import CallAccessArm


@dataclass(frozen=True)
class Armed:
    """An announced call: the user's mobile calling the access number is connected to `to` as `identity`."""

    user_id: int
    to: str
    identity: CallerIdentity


def _upsert(dialect: str) -> Insert:
    """INSERT … ON CONFLICT (user_id) DO UPDATE: two announcements at once cannot collide on the key."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(cast(Table, CallAccessArm.__table__))
    return statement.on_conflict_do_update(
        index_elements=[CallAccessArm.user_id],
        set_={
            "destination": statement.excluded.destination,
            "identity": statement.excluded.identity,
            "expires_at": statement.excluded.expires_at,
        },
    )


_UPSERTS = {dialect: _upsert(dialect) for dialect in ("sqlite", "postgresql")}


async def arm(session: AsyncSession, user_id: int, to: str, identity: CallerIdentity, expires_at: datetime) -> None:
    """Announce a call (the caller commits); it replaces the user's earlier one."""
    values = {
        "user_id": user_id,
        "destination": to,
        "identity": identity.model_dump(mode="json"),
        "expires_at": expires_at,
    }
    await session.execute(_UPSERTS[session.get_bind().dialect.name], values)


async def claim(session: AsyncSession, user_id: int, now: datetime) -> Armed | None:
    """Take the user's announcement (the caller commits): None when there is none or its window has passed
    (an expired one is deleted all the same: it can never be used)."""
    row = (
        await session.execute(
            delete(CallAccessArm)
            .where(CallAccessArm.user_id == user_id)
            .returning(CallAccessArm.destination, CallAccessArm.identity, CallAccessArm.expires_at)
        )
    ).first()
    if row is None or aware(row.expires_at) <= now:
        return None
    return Armed(user_id, row.destination, CallerIdentity.model_validate(row.identity))
