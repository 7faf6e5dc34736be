"""GET/PUT /me/services/{service}: one route pair per user service, each documented with its own model.

The call-center agent has its own routes (`call_center_agent.py`): its document is assembled from the call
centers in the database. The administrator's values are set through `/admin/users/{id}/services/{service}`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from hipper.api.deps import CurrentUser, SettingsCaller, autocommit_of, settings_caller, state_of, writer_of
from hipper.api.state import AppState
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


async def related_documents(
    state: AppState, caller: SettingsCaller, settings_class: type[ServiceSettings]
) -> dict[str, ServiceSettings]:
    """The user's other services the rules of `settings_class` look at, read in one statement, and only when there
    are any (voicemail's); an unlicensed related service is left out (the user lacks it)."""
    related = [SERVICES[name] for name in settings_class.related_services if caller.context.has(name)]
    if not related:
        return {}
    async with state.sessions() as session:
        return await service_settings.load_many(session, caller.user_id, related)


def current_document(caller: SettingsCaller, settings_class: type[ServiceSettings]) -> ServiceSettings:
    """What a GET answers: the caller's stored document (defaults where none is stored), behind the licence gate."""
    ensure_licensed(settings_class, caller.context)
    return service_settings.document(settings_class, caller.user_id, caller.document)


async def new_document(
    state: AppState, caller: SettingsCaller, settings_class: type[ServiceSettings], proposed: dict[str, Any]
) -> ServiceSettings:
    """What a PUT writes: the `proposed` fields (the body as the client set them) applied to the current document
    by the domain's rules (`change`: read-only fields, step-up for a new number, the related documents they read).
    The one step between a parsed body and the write, for the route and the fast path (api/settings_fast_path.py)
    alike; raises what the route answers (403 not_licensed / read_only / step_up_required, 422)."""
    current = current_document(caller, settings_class)
    related = await related_documents(state, caller, settings_class)
    return change(
        settings_class,
        current,
        proposed,
        caller.context,
        stepped_up=caller.stepped_up,
        related=related,
        now=datetime.now(UTC),
    )


def _add_routes(settings_class: type[ServiceSettings]) -> None:
    name = settings_class.service
    doc = (settings_class.__doc__ or "").strip()
    # The session lookup also reads this service's stored document, without an ORM session: a GET is that one
    # statement, a PUT that and its one-round-trip write (docs/performance.md).
    caller_of_service = Annotated[SettingsCaller, Depends(settings_caller(name))]

    async def read(caller: SettingsCaller) -> Any:
        return current_document(caller, settings_class)

    # The state comes from the request rather than as a dependency: each dependency FastAPI solves costs time.
    async def write(body: ServiceSettings | dict[str, Any], caller: SettingsCaller, request: Request) -> Any:
        state = state_of(request)
        proposed = body if isinstance(body, dict) else body.model_dump(mode="json", exclude_unset=True)
        new = await new_document(state, caller, settings_class, proposed)
        await service_settings.save_and_commit(autocommit_of(state), caller.user_id, new, writer_of(state))
        state.events.published()  # after the commit, as `deps.commit` does
        return new

    # Routes are built per service, so the body's model and the dependency are only known here (annotations are
    # strings, resolved in the module's namespace).
    read.__annotations__["caller"] = caller_of_service
    write.__annotations__["caller"] = caller_of_service
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
