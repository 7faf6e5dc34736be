"""The outbox: events are rows written in the change's own transaction; publishing happens after commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.models import Event


def add_event(
    session: AsyncSession, user_id: int | None, type_: str, payload: dict[str, Any], company_id: int | None = None
) -> None:
    session.add(
        Event(user_id=user_id, company_id=company_id, type=type_, payload=payload, created_at=datetime.now(UTC))
    )


_INSERT = insert(Event).values(
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
        _INSERT,
        {"user_id": user_id, "company_id": company_id, "type": type_, "payload": payload, "created_at": created_at},
    )
