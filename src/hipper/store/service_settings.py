"""Reading and writing a user's service settings documents."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.errors import DomainError
from hipper.domain.services import ServiceSettings
from hipper.store.events import add_event
from hipper.store.models import ServiceSetting

log = logging.getLogger(__name__)


def _salvage(settings_class: type[ServiceSettings], data: dict[str, Any]) -> ServiceSettings:
    """Keep every stored value the current model still accepts; the rest falls back to its default.

    A stored document can stop validating when a service's model changes between versions. Refusing to read it
    would break every GET and every call for that user, so the values that still fit are kept, one by one.
    """
    kept = settings_class().model_dump(mode="json")
    pending = {key: value for key, value in data.items() if key in settings_class.model_fields}
    # Values can depend on each other (`active` needs `destination`): repeat until nothing more fits.
    progress = True
    while pending and progress:
        progress = False
        for key, value in list(pending.items()):
            try:
                settings_class.model_validate({**kept, key: value})
            except (ValidationError, DomainError):
                continue
            kept[key] = pending.pop(key)
            progress = True
    return settings_class.model_validate(kept)


async def load(session: AsyncSession, user_id: int, settings_class: type[ServiceSettings]) -> ServiceSettings:
    row = await session.get(ServiceSetting, (user_id, settings_class.service))
    if row is None:
        return settings_class()
    # Stored documents were validated when written; the user rules (`check`) are not run again.
    try:
        return settings_class.model_validate(row.data)
    except (ValidationError, DomainError):
        log.warning("stored %s settings of user %s no longer validate; keeping what fits", row.service, user_id)
        return _salvage(settings_class, dict(row.data))


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
