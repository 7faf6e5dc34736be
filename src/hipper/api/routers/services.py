"""GET/PUT /me/services/{service}: one route pair per user service, each documented with its own model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from hipper.api.deps import CurrentUser, Session, State, commit
from hipper.domain.licences import licensed_services
from hipper.domain.services import SERVICES, ServiceSettings, change, ensure_licensed
from hipper.store import service_settings
from hipper.store.users import context_of

router = APIRouter(prefix="/me/services", tags=["services"])


class ServiceList(BaseModel):
    services: list[str]


@router.get("", response_model=ServiceList)
async def list_services(auth: CurrentUser) -> ServiceList:
    """The services this user holds a licence for, in the manual's order."""
    return ServiceList(services=licensed_services(frozenset(auth.user.licences or ())))


def _add_routes(settings_class: type[ServiceSettings]) -> None:
    name = settings_class.service
    doc = (settings_class.__doc__ or "").strip()

    async def read(auth: CurrentUser, session: Session) -> Any:
        ctx = await context_of(session, auth.user)
        ensure_licensed(settings_class, ctx)
        return await service_settings.load(session, auth.user.id, settings_class)

    async def write(body: ServiceSettings, auth: CurrentUser, session: Session, state: State) -> Any:
        ctx = await context_of(session, auth.user)
        ensure_licensed(settings_class, ctx)
        current = await service_settings.load(session, auth.user.id, settings_class)
        proposed = body.model_dump(mode="json", exclude_unset=True)
        new = change(settings_class, current, proposed, ctx, stepped_up=auth.stepped_up)
        await service_settings.save(session, auth.user.id, new)
        await commit(session, state)
        return new

    # Routes are built per service, so the body's model is only known here (annotations are strings).
    write.__annotations__["body"] = settings_class

    router.add_api_route(
        f"/{name}",
        read,
        methods=["GET"],
        response_model=settings_class,
        summary=f"Read {name}",
        description=doc,
        name=f"get_{name}",
    )
    router.add_api_route(
        f"/{name}",
        write,
        methods=["PUT"],
        response_model=settings_class,
        summary=f"Change {name}",
        description=doc + "\n\nSetting a new phone number needs a fresh step-up (POST /auth/step-up).",
        name=f"put_{name}",
    )


for _settings_class in SERVICES.values():
    _add_routes(_settings_class)
