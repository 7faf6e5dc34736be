"""Reading and writing a user's service settings documents."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Insert, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.errors import DomainError
from hipper.domain.services import ServiceSettings
from hipper.store.events import insert_event
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


def document(settings_class: type[ServiceSettings], user_id: int, data: dict[str, Any] | None) -> ServiceSettings:
    """The document from its stored JSON (None: no row yet, the defaults)."""
    if data is None:
        return settings_class()
    # Stored documents were validated when written; the user rules (`check`) are not run again.
    try:
        return settings_class.model_validate(data)
    except (ValidationError, DomainError):
        log.warning(
            "stored %s settings of user %s no longer validate; keeping what fits", settings_class.service, user_id
        )
        return _salvage(settings_class, dict(data))


# The document column only, not an ORM entity: nothing to keep in the identity map, and `save` writes with a Core
# upsert that an entity held here would not see. Built once: composing it per request cost measurable CPU.
_LOAD = select(ServiceSetting.data).where(
    ServiceSetting.user_id == bindparam("user_id"), ServiceSetting.service == bindparam("service")
)


async def load(session: AsyncSession, user_id: int, settings_class: type[ServiceSettings]) -> ServiceSettings:
    data = (await session.execute(_LOAD, {"user_id": user_id, "service": settings_class.service})).scalar_one_or_none()
    return document(settings_class, user_id, data)


async def load_many(
    session: AsyncSession, user_id: int, settings_classes: list[type[ServiceSettings]]
) -> dict[str, ServiceSettings]:
    """Several of the user's documents in one statement (a PUT needs its own and the related services')."""
    wanted = {settings_class.service: settings_class for settings_class in settings_classes}
    if len(wanted) == 1:
        (settings_class,) = wanted.values()
        return {settings_class.service: await load(session, user_id, settings_class)}
    rows = await session.execute(
        select(ServiceSetting.service, ServiceSetting.data).where(
            ServiceSetting.user_id == user_id, ServiceSetting.service.in_(list(wanted))
        )
    )
    stored: dict[str, dict[str, Any]] = {service: data for service, data in rows}
    return {name: document(settings_class, user_id, stored.get(name)) for name, settings_class in wanted.items()}


def _upsert(dialect: str) -> Insert:
    """INSERT … ON CONFLICT (user_id, service) DO UPDATE: concurrent first writes cannot collide on the key."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(cast(Table, ServiceSetting.__table__)).values(
        user_id=bindparam("user_id"),
        service=bindparam("service"),
        data=bindparam("data", type_=ServiceSetting.__table__.c.data.type),
        updated_at=bindparam("updated_at", type_=ServiceSetting.__table__.c.updated_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[ServiceSetting.user_id, ServiceSetting.service],
        set_={"data": statement.excluded.data, "updated_at": statement.excluded.updated_at},
    )


# Built once per dialect with bound parameters, like the selects above.
_UPSERTS = {dialect: _upsert(dialect) for dialect in ("sqlite", "postgresql")}


async def save(session: AsyncSession, user_id: int, settings: ServiceSettings) -> None:
    """Store the document and queue its event in the same transaction (the caller commits).

    One upsert statement, no read first: a read-then-insert let two concurrent first writes of the same service
    both insert, and the loser answered 500 (unique key). Both databases support ON CONFLICT (SQLite ≥ 3.24).
    """
    data = settings.model_dump(mode="json")
    now = datetime.now(UTC)
    values = {"user_id": user_id, "service": settings.service, "data": data, "updated_at": now}
    await session.execute(_UPSERTS[session.get_bind().dialect.name], values)
    # The event as a Core insert right after the upsert (same transaction, so the outbox stays atomic with the
    # change), rather than an ORM object flushed at commit: the flush machinery cost ≈ 0.3 ms of a PUT.
    await insert_event(session, user_id, "service.changed", {"service": settings.service, "settings": data}, now)
