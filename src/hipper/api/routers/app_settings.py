"""GET/PUT /me/app-settings: quick settings, theme, push, contact display, privacy, language (SPEC B3, E4, L)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from hipper.api.deps import CurrentUser, Session, State, commit
from hipper.domain import app_settings as domain
from hipper.domain.app_settings import AppSettings
from hipper.domain.licences import licensed_services
from hipper.store import app_settings

router = APIRouter(prefix="/me/app-settings", tags=["app settings"])


@router.get("", response_model=AppSettings)
async def read_app_settings(auth: CurrentUser, session: Session) -> AppSettings:
    """The saved settings, or the defaults when the user never saved; quick settings only list licensed
    services (a licence taken away hides its toggle)."""
    settings, _saved = await app_settings.load(
        session, auth.user.id, licensed_services(frozenset(auth.user.licences or ()))
    )
    return settings


@router.put("", response_model=AppSettings)
async def change_app_settings(
    auth: CurrentUser,
    session: Session,
    state: State,
    body: dict[str, Any] = Body(
        ...,
        description="the whole document or any part of it; nested objects merge field by field",
        openapi_examples={"reorder": {"value": {"quick_settings": ["voicemail", "do-not-disturb"]}}},
    ),
) -> AppSettings:
    licensed = licensed_services(frozenset(auth.user.licences or ()))
    current, _saved = await app_settings.load(session, auth.user.id, licensed)
    new = domain.change(current, body, licensed)
    await app_settings.save(session, auth.user.id, new)
    await commit(session, state)
    return new
