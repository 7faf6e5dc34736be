"""Reading and writing a user's service settings documents."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.services import ServiceSettings
from hipper.store.events import add_event
from hipper.store.models import ServiceSetting


async def load(session: AsyncSession, user_id: int, settings_class: type[ServiceSettings]) -> ServiceSettings:
    row = await session.get(ServiceSetting, (user_id, settings_class.service))
    if row is None:
        return settings_class()
    # Stored documents were validated when written; construct without re-running the user rules.
    return settings_class.model_validate(row.data)


async def save(session: AsyncSession, user_id: int, settings: ServiceSettings) -> None:
    """Store the document and queue its event in the same transaction (the caller commits)."""
    data = settings.model_dump(mode="json")
    row = await session.get(ServiceSetting, (user_id, settings.service))
    now = datetime.now(UTC)
    if row is None:
        session.add(ServiceSetting(user_id=user_id, service=settings.service, data=data, updated_at=now))
    else:
        row.data = data
        row.updated_at = now
    add_event(session, user_id, "service.changed", {"service": settings.service, "settings": data})
