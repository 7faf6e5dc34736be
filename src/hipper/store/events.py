"""The outbox: events are rows written in the change's own transaction; publishing happens after commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hipper.store.models import Event


def add_event(
    session: AsyncSession, user_id: int | None, type_: str, payload: dict[str, Any], company_id: int | None = None
) -> None:
    session.add(
        Event(user_id=user_id, company_id=company_id, type=type_, payload=payload, created_at=datetime.now(UTC))
    )
