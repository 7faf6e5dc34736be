"""The user's own profile: username, extension, numbers, licences, new voicemails (SPEC A4, A5, B1)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select

from hipper.api.deps import CurrentUser, Session
from hipper.domain.licences import licensed_services
from hipper.store.models import Voicemail

router = APIRouter(prefix="/me", tags=["profile"])


class Profile(BaseModel):
    id: int
    username: str
    first_name: str
    last_name: str
    email: str | None
    extension: str | None
    numbers: dict[str, str]
    licences: list[str]
    services: list[str]
    pin_set: bool
    new_voicemails: int
    role: str
    # The company's night switch (the administrator's): the company and department numbers then go to their
    # night destination, whatever the user's own night-forwarding document says (the app shows both).
    company_night_mode: bool = False


@router.get("", response_model=Profile)
async def profile(auth: CurrentUser, session: Session) -> Profile:
    user = auth.user
    licences = frozenset(user.licences or ())
    new_voicemails = (
        await session.execute(
            select(func.count()).select_from(Voicemail).where(Voicemail.user_id == user.id, ~Voicemail.heard)
        )
    ).scalar_one()
    return Profile(
        id=user.id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        extension=user.extension,
        numbers=auth.numbers,
        licences=sorted(licences),
        services=licensed_services(licences),
        pin_set=user.pin_hash is not None,
        new_voicemails=new_voicemails,
        role=user.role,
        company_night_mode=bool(auth.company is not None and auth.company.night_mode),
    )
