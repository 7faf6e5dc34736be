"""The app settings document (SPEC B3, E4, L), one `service_settings` row with service "app-settings".

It shares the table with the user services because it is the same thing — one JSON document per user and
name — but it is no licensed service, so it is read and written only through here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.app_settings import SERVICE, AppSettings, defaults
from hipper.store.events import add_event
from hipper.store.models import ServiceSetting


async def load(session: AsyncSession, user_id: int, licensed: list[str]) -> tuple[AppSettings, bool]:
    """The stored document (or the defaults) as the user may see it, and whether it was ever saved."""
    row = await session.get(ServiceSetting, (user_id, SERVICE))
    if row is None:
        return defaults(licensed), False
    return AppSettings.model_validate(row.data).visible_to(licensed), True


async def save(session: AsyncSession, user_id: int, settings: AppSettings) -> None:
    data = settings.model_dump(mode="json")
    row = await session.get(ServiceSetting, (user_id, SERVICE))
    now = datetime.now(UTC)
    if row is None:
        session.add(ServiceSetting(user_id=user_id, service=SERVICE, data=data, updated_at=now))
    else:
        row.data = data
        row.updated_at = now
    add_event(session, user_id, "app_settings.changed", {"settings": data})


async def push_enabled(session: AsyncSession, user_id: int, kind: Literal["missed_calls", "voicemail"]) -> bool:
    """Whether the user wants Web Push for missed calls or new voicemail (SPEC L); on until switched off."""
    row = await session.get(ServiceSetting, (user_id, SERVICE))
    if row is None:
        return True
    return bool(getattr(AppSettings.model_validate(row.data).push, kind))
