"""GET/PUT /me/services/{service}: one route pair per user service, each documented with its own model.

The call-center agent has its own routes (`call_center_agent.py`): its document is assembled from the call
centers in the database. The administrator's values are set through `/admin/users/{id}/services/{service}`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from hipper.api.deps import Authenticated, CurrentUser, Session, State, authenticated_with_document, commit
from hipper.domain.context import UserContext
from hipper.domain.licences import licensed_services
from hipper.domain.services import SERVICES, CallCenterAgent, ServiceSettings, change, ensure_licensed
from hipper.store import service_settings

# Services whose routes live in their own module.
OWN_ROUTES = frozenset({CallCenterAgent.service})

router = APIRouter(prefix="/me/services", tags=["services"])


class ServiceList(BaseModel):
    services: list[str]


@router.get("", response_model=ServiceList)
async def list_services(auth: CurrentUser) -> ServiceList:
    """The services this user holds a licence for, in the manual's order."""
    return ServiceList(services=licensed_services(frozenset(auth.user.licences or ())))


async def current_and_related(
    session: Session, auth: Authenticated, settings_class: type[ServiceSettings], ctx: UserContext
) -> tuple[ServiceSettings, dict[str, ServiceSettings]]:
    """The document being changed (read with the session) and the user's other services its rules look at.

    The related services are read in one statement, and only when there are any; an unlicensed related service is
    left out (the user lacks it).
    """
    user_id = auth.user.id
    current = service_settings.document(settings_class, user_id, auth.documents[settings_class.service])
    related = [SERVICES[name] for name in settings_class.related_services if ctx.has(name)]
    documents = await service_settings.load_many(session, user_id, related) if related else {}
    return current, documents


def _add_routes(settings_class: type[ServiceSettings]) -> None:
    name = settings_class.service
    doc = (settings_class.__doc__ or "").strip()

    async def read(auth: CurrentUser) -> Any:
        ctx = auth.context
        ensure_licensed(settings_class, ctx)
        # The stored document came with the session lookup: a GET is one statement (docs/performance.md).
        return service_settings.document(settings_class, auth.user.id, auth.documents[name])

    # The session lookup also reads this service's stored document: a GET is one statement (and so needs no
    # transaction around it), a PUT one statement fewer.
    read.__annotations__["auth"] = Annotated[Authenticated, Depends(authenticated_with_document(name, read_only=True))]
    with_document = Annotated[Authenticated, Depends(authenticated_with_document(name))]

    async def write(body: ServiceSettings | dict[str, Any], auth: CurrentUser, session: Session, state: State) -> Any:
        ctx = auth.context
        ensure_licensed(settings_class, ctx)
        current, related = await current_and_related(session, auth, settings_class, ctx)
        proposed = body if isinstance(body, dict) else body.model_dump(mode="json", exclude_unset=True)
        new = change(
            settings_class,
            current,
            proposed,
            ctx,
            stepped_up=auth.stepped_up,
            related=related,
            now=datetime.now(UTC),
        )
        await service_settings.save(session, auth.user.id, new)
        await commit(session, state)
        return new

    # Routes are built per service, so the body's model is only known here (annotations are strings).
    write.__annotations__["body"] = settings_class
    write.__annotations__["auth"] = with_document

    router.add_api_route(
        f"/{name}",
        read,
        methods=["GET"],
        response_model=settings_class,
        summary=f"Read {name}",
        description=doc,
        name=f"get_{name}",
    )
    if settings_class.administrator_only:
        # Every change is refused before the body is looked at, so the body is not parsed as the document.
        write.__annotations__["body"] = dict[str, Any]
    router.add_api_route(
        f"/{name}",
        write,
        methods=["PUT"],
        response_model=settings_class,
        summary=f"Change {name}",
        description=_write_description(settings_class, doc),
        name=f"put_{name}",
        responses={403: {"description": "not_licensed, read_only or step_up_required (see `code`)"}},
    )


def _write_description(settings_class: type[ServiceSettings], doc: str) -> str:
    if settings_class.administrator_only:
        return doc + "\n\nThe whole document is the administrator's: every change answers 403 `read_only`."
    text = doc + "\n\nSetting a new phone number needs a fresh step-up (POST /auth/step-up)."
    if settings_class.read_only_fields:
        fields = ", ".join(sorted(settings_class.read_only_fields))
        text += f" Set by the administrator (403 `read_only` when changed): {fields}."
    return text


for _settings_class in SERVICES.values():
    if _settings_class.service not in OWN_ROUTES:
        _add_routes(_settings_class)
