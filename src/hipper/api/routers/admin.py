"""Administration API (SPEC M1): companies, groups, users, licences, SIP devices, call centers, hunt groups,
the enterprise phone list and the administrator-only values of user services.

Every route needs the administrator role (403 otherwise). The rules live in `hipper.store.admin` and
`hipper.store.devices`, shared with the CLI; this module only maps HTTP onto them. Bodies carry numbers as typed
by the administrator: the store normalises and checks them, so the CLI gets exactly the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.api.deps import MAX_ROW_ID, Admin, Authenticated, Session, State, administrator, commit
from hipper.domain.barring import MAX_PREFIXES
from hipper.domain.errors import InvalidSetting
from hipper.store import admin, devices, media_files, outbound
from hipper.store.models import CallCenter, Company, DirectoryEntry, Group, HuntGroup, OutboundPolicy, SipDevice, User
from hipper.store.outbound import MAX_CALLS_LIMIT
from hipper.store.users import numbers_of


class AdminRoute(APIRoute):
    """Turns the store's Conflict/NotFound into 409/404 bodies shaped like FastAPI's own 422 (a `loc` naming
    the field), and a uniqueness race lost at commit into a 409 instead of a 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def translated(request: Request) -> Response:
            try:
                return await handler(request)
            except admin.Conflict as exc:
                return _error(409, exc.field, exc.reason, "conflict")
            except admin.NotFound as exc:
                return JSONResponse(status_code=404, content={"detail": str(exc)})
            except IntegrityError:
                return _error(409, "", "conflicts with existing data (changed at the same time?)", "conflict")

        return translated


def _error(status: int, field: str, reason: str, kind: str) -> JSONResponse:
    location = ["body", *field.split(".")] if field else ["body"]
    return JSONResponse(status_code=status, content={"detail": [{"loc": location, "msg": reason, "type": kind}]})


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(administrator)], route_class=AdminRoute)


# --- scope: a company's administrator manages that company only ----------------------------------------------
#
# An administrator without a company (created with `hipper admin create`) runs the platform: every company.
# An administrator inside a company manages that company only; anything of another company answers 404, the
# same as a missing id, so ids of other tenants reveal nothing.


def _check_scope(auth: Authenticated, company_id: int | None, what: str, key: object) -> None:
    scope = auth.user.company_id
    if scope is not None and company_id != scope:
        raise admin.NotFound(what, key)


def _platform_only(auth: Authenticated) -> None:
    if auth.user.company_id is not None:
        raise HTTPException(403, "only a platform administrator (one without a company) manages companies")


async def _company(auth: Authenticated, session: AsyncSession, company_id: int) -> Company:
    company = await admin.get_company(session, company_id)
    _check_scope(auth, company.id, "company", company_id)
    return company


async def _group(auth: Authenticated, session: AsyncSession, group_id: int) -> Group:
    group = await admin.get_group(session, group_id)
    _check_scope(auth, group.company_id, "group", group_id)
    return group


async def _user(auth: Authenticated, session: AsyncSession, user_id: int) -> User:
    user = await admin.get_user(session, user_id)
    _check_scope(auth, user.company_id, "user", user_id)
    return user


async def _call_center(auth: Authenticated, session: AsyncSession, call_center_id: int) -> CallCenter:
    call_center = await admin.get_call_center(session, call_center_id)
    _check_scope(auth, call_center.company_id, "call center", call_center_id)
    return call_center


async def _hunt_group(auth: Authenticated, session: AsyncSession, hunt_group_id: int) -> HuntGroup:
    hunt_group = await admin.get_hunt_group(session, hunt_group_id)
    _check_scope(auth, hunt_group.company_id, "hunt group", hunt_group_id)
    return hunt_group


async def _directory_entry(auth: Authenticated, session: AsyncSession, entry_id: int) -> DirectoryEntry:
    entry = await admin.get_directory_entry(session, entry_id)
    _check_scope(auth, entry.company_id, "enterprise directory entry", entry_id)
    return entry


async def _device(auth: Authenticated, session: AsyncSession, device_id: int) -> SipDevice:
    device = await devices.get_device(session, device_id)
    owner = await admin.get_user(session, device.user_id)
    _check_scope(auth, owner.company_id, "SIP device", device_id)
    return device


# Ids beyond what the database's integer columns hold (PostgreSQL INTEGER, 2^31-1) are refused as input
# (422) instead of failing in the driver (a 500).
MAX_ID = MAX_ROW_ID
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- companies ---------------------------------------------------------------------------------------------------


class CompanyIn(BaseModel):
    name: str = Field(max_length=200)
    number: str | None = Field(default=None, description="the company number; 0201230000, +31…, 0031…")
    day_destination: str | None = Field(default=None, description="where the company number rings by day")
    night_destination: str | None = Field(default=None, description="where it rings in night mode")


class CompanyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    number: str | None = None
    day_destination: str | None = None
    night_destination: str | None = None
    night_mode: bool | None = None


class CompanyOut(Out):
    id: int
    name: str
    number: str | None
    night_mode: bool
    day_destination: str | None
    night_destination: str | None


class NightMode(BaseModel):
    night_mode: bool


def _changes(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True)


@router.post("/companies", response_model=CompanyOut, status_code=201)
async def create_company(body: CompanyIn, auth: Admin, session: Session, state: State) -> Company:
    _platform_only(auth)
    company = await admin.create_company(
        session,
        body.name,
        body.number,
        day_destination=body.day_destination,
        night_destination=body.night_destination,
    )
    await commit(session, state)
    return company


@router.get("/companies", response_model=list[CompanyOut])
async def list_companies(auth: Admin, session: Session) -> list[Company]:
    if auth.user.company_id is not None:
        return [await _company(auth, session, auth.user.company_id)]
    return await admin.list_companies(session)


@router.get("/companies/{company_id}", response_model=CompanyOut)
async def get_company(company_id: Id, auth: Admin, session: Session) -> Company:
    return await _company(auth, session, company_id)


@router.patch("/companies/{company_id}", response_model=CompanyOut)
async def update_company(company_id: Id, body: CompanyPatch, auth: Admin, session: Session, state: State) -> Company:
    company = await admin.update_company(session, await _company(auth, session, company_id), _changes(body))
    await commit(session, state)
    return company


@router.put("/companies/{company_id}/night-mode", response_model=CompanyOut)
async def set_night_mode(company_id: Id, body: NightMode, auth: Admin, session: Session, state: State) -> Company:
    """Night mode on or off: the company and department numbers ring their night destinations."""
    company = await admin.set_night_mode(session, await _company(auth, session, company_id), body.night_mode)
    await commit(session, state)
    return company


# --- groups (departments) ------------------------------------------------------------------------------------


class GroupIn(BaseModel):
    name: str = Field(max_length=200)
    number: str | None = Field(default=None, description="the department number")
    day_destination: str | None = None
    night_destination: str | None = None


class GroupPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    number: str | None = None
    day_destination: str | None = None
    night_destination: str | None = None


class GroupOut(Out):
    id: int
    company_id: int
    name: str
    number: str | None
    day_destination: str | None
    night_destination: str | None


@router.post("/companies/{company_id}/groups", response_model=GroupOut, status_code=201)
async def create_group(company_id: Id, body: GroupIn, auth: Admin, session: Session, state: State) -> Group:
    company = await _company(auth, session, company_id)
    group = await admin.create_group(
        session,
        company,
        body.name,
        body.number,
        day_destination=body.day_destination,
        night_destination=body.night_destination,
    )
    await commit(session, state)
    return group


@router.get("/companies/{company_id}/groups", response_model=list[GroupOut])
async def list_groups(company_id: Id, auth: Admin, session: Session) -> list[Group]:
    await _company(auth, session, company_id)
    return await admin.list_groups(session, company_id)


@router.get("/groups/{group_id}", response_model=GroupOut)
async def get_group(group_id: Id, auth: Admin, session: Session) -> Group:
    return await _group(auth, session, group_id)


@router.patch("/groups/{group_id}", response_model=GroupOut)
async def update_group(group_id: Id, body: GroupPatch, auth: Admin, session: Session, state: State) -> Group:
    group = await admin.update_group(session, await _group(auth, session, group_id), _changes(body))
    await commit(session, state)
    return group


@router.delete("/groups/{group_id}", status_code=204)
async def delete_group(group_id: Id, auth: Admin, session: Session, state: State) -> None:
    await admin.delete_group(session, await _group(auth, session, group_id))
    await commit(session, state)


# --- users ---------------------------------------------------------------------------------------------------


class UserIn(BaseModel):
    username: str = Field(max_length=100)
    password: str = Field(max_length=200, description=f"at least {admin.MIN_PASSWORD_LENGTH} characters")
    company_id: BodyId | None = None
    group_id: BodyId | None = None
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    email: str | None = Field(default=None, max_length=200)
    extension: str | None = Field(default=None, description="the short number, unique in the company")
    direct_number: str | None = None
    mobile_number: str | None = None
    licences: list[str] = Field(default_factory=list, description="licence or package names (basic, agent, full)")
    role: Literal["user", "admin"] = "user"


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=200)
    extension: str | None = None
    direct_number: str | None = None
    mobile_number: str | None = None
    group_id: BodyId | None = None
    role: Literal["user", "admin"] | None = None
    licences: list[str] | None = None


class UserOut(Out):
    id: int
    username: str
    role: str
    company_id: int | None
    group_id: int | None
    first_name: str
    last_name: str
    email: str | None
    extension: str | None
    direct_number: str | None
    mobile_number: str | None
    licences: list[str]
    locked_until: datetime | None
    pin_locked_until: datetime | None
    pin_set: bool = False
    numbers: dict[str, str] | None = Field(
        default=None, description="every number of the user by kind (SPEC A4); only when reading one user"
    )


def _user_out(user: User) -> UserOut:
    out = UserOut.model_validate(user)
    out.pin_set = user.pin_hash is not None
    return out


class PasswordIn(BaseModel):
    password: str = Field(max_length=200)


class LicencesIn(BaseModel):
    licences: list[str] = Field(description="licence or package names")


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, auth: Admin, session: Session, state: State) -> UserOut:
    # A company's administrator creates users in their own company; the platform's may create company-less ones.
    company_id = body.company_id if body.company_id is not None else auth.user.company_id
    company = await _company(auth, session, company_id) if company_id is not None else None
    group = await _group(auth, session, body.group_id) if body.group_id is not None else None
    user = await admin.create_user(
        session,
        state.hasher,
        username=body.username,
        password=body.password,
        company=company,
        group=group,
        first_name=body.first_name,
        last_name=body.last_name,
        email=body.email,
        extension=body.extension,
        direct_number=body.direct_number,
        mobile_number=body.mobile_number,
        licences=body.licences,
        role=body.role,
    )
    await commit(session, state)
    return _user_out(user)


@router.get("/users", response_model=list[UserOut])
async def list_users(auth: Admin, session: Session, company_id: OptionalId = None) -> list[UserOut]:
    if company_id is not None:
        await _company(auth, session, company_id)
    company_id = company_id if company_id is not None else auth.user.company_id
    return [_user_out(user) for user in await admin.list_users(session, company_id)]


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: Id, auth: Admin, session: Session) -> UserOut:
    """The user, with every number they are reached on (company, direct, department, mobile, call center)."""
    user = await _user(auth, session, user_id)
    out = _user_out(user)
    out.numbers = await numbers_of(session, user)
    return out


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(user_id: Id, body: UserPatch, auth: Admin, session: Session, state: State) -> UserOut:
    user = await admin.update_user(session, await _user(auth, session, user_id), _changes(body))
    await commit(session, state)
    return _user_out(user)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: Id, auth: Admin, session: Session, state: State) -> None:
    if user_id == auth.user.id:
        raise InvalidSetting("user_id", "you cannot delete your own account")
    paths = await admin.delete_user(session, await _user(auth, session, user_id))
    await commit(session, state)
    await media_files.remove(state.settings.data_dir, paths)  # their voicemails, greetings, recordings


@router.post("/users/{user_id}/password", status_code=204)
async def reset_password(user_id: Id, body: PasswordIn, auth: Admin, session: Session, state: State) -> None:
    """Set a new password; every session of the user ends."""
    await admin.reset_password(session, state.hasher, await _user(auth, session, user_id), body.password)
    await commit(session, state)


@router.post("/users/{user_id}/unlock", response_model=UserOut)
async def unlock_user(user_id: Id, auth: Admin, session: Session, state: State) -> UserOut:
    """Lift the lockout after too many wrong passwords or PINs."""
    user = await _user(auth, session, user_id)
    await admin.unlock_user(session, user)
    await commit(session, state)
    return _user_out(user)


@router.put("/users/{user_id}/licences", response_model=UserOut)
async def replace_licences(user_id: Id, body: LicencesIn, auth: Admin, session: Session, state: State) -> UserOut:
    user = await admin.update_user(session, await _user(auth, session, user_id), {"licences": body.licences})
    await commit(session, state)
    return _user_out(user)


@router.post("/users/{user_id}/licences", response_model=UserOut)
async def add_licences(user_id: Id, body: LicencesIn, auth: Admin, session: Session, state: State) -> UserOut:
    user = await admin.add_licences(session, await _user(auth, session, user_id), body.licences)
    await commit(session, state)
    return _user_out(user)


@router.delete("/users/{user_id}/licences/{licence}", response_model=UserOut)
async def remove_licence(user_id: Id, licence: str, auth: Admin, session: Session, state: State) -> UserOut:
    """Remove one licence, or every licence of a package."""
    user = await admin.remove_licences(session, await _user(auth, session, user_id), [licence])
    await commit(session, state)
    return _user_out(user)


# --- administrator-only values of user services ----------------------------------------------------------------


@router.get("/users/{user_id}/services/{service}")
async def read_user_service(user_id: Id, service: str, auth: Admin, session: Session) -> Any:
    """Night forwarding, call-recording mode, fixed-mobile mode: the document as the user sees it."""
    settings = await admin.read_user_service(session, await _user(auth, session, user_id), service)
    return settings.model_dump(mode="json")


@router.put("/users/{user_id}/services/{service}")
async def change_user_service(
    user_id: Id, service: str, body: dict[str, Any], auth: Admin, session: Session, state: State
) -> Any:
    """Set the administrator's values (the user's own values are kept); no step-up needed."""
    user = await _user(auth, session, user_id)
    settings = await admin.change_user_service(session, user, service, body)
    await commit(session, state)
    return settings.model_dump(mode="json")


# --- SIP devices ---------------------------------------------------------------------------------------------


class DeviceIn(BaseModel):
    auth_username: str = Field(max_length=100, description="the digest username the device registers with")
    password: str | None = Field(default=None, max_length=200, description="omit to have one generated")
    kind: Literal["desk", "softphone"] = "desk"
    name: str = Field(default="", max_length=200)


class DevicePasswordIn(BaseModel):
    password: str | None = Field(default=None, max_length=200, description="omit to have one generated")


class DeviceOut(Out):
    id: int
    user_id: int
    auth_username: str
    realm: str
    kind: str
    name: str
    created_at: datetime


class DeviceCreated(DeviceOut):
    password: str = Field(description="shown this once; only digest hashes are stored")


@router.post("/users/{user_id}/devices", response_model=DeviceCreated, status_code=201)
async def create_device(user_id: Id, body: DeviceIn, auth: Admin, session: Session, state: State) -> DeviceCreated:
    user = await _user(auth, session, user_id)
    password = body.password or devices.generate_password()
    device = await devices.create_device(
        session,
        user,
        auth_username=body.auth_username,
        password=password,
        realm=state.settings.sip_realm,
        kind=body.kind,
        name=body.name,
    )
    await commit(session, state)
    return DeviceCreated(**DeviceOut.model_validate(device).model_dump(), password=password)


@router.get("/users/{user_id}/devices", response_model=list[DeviceOut])
async def list_devices(user_id: Id, auth: Admin, session: Session) -> list[SipDevice]:
    await _user(auth, session, user_id)
    return await devices.list_devices(session, user_id)


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def get_device(device_id: Id, auth: Admin, session: Session) -> SipDevice:
    return await _device(auth, session, device_id)


@router.post("/devices/{device_id}/password", response_model=DeviceCreated)
async def reset_device_password(
    device_id: Id, body: DevicePasswordIn, auth: Admin, session: Session, state: State
) -> DeviceCreated:
    device = await _device(auth, session, device_id)
    password = body.password or devices.generate_password()
    await devices.reset_password(session, device, password, state.settings.sip_realm)
    await commit(session, state)
    return DeviceCreated(**DeviceOut.model_validate(device).model_dump(), password=password)


@router.delete("/devices/{device_id}", status_code=204)
async def delete_device(device_id: Id, auth: Admin, session: Session, state: State) -> None:
    await devices.delete_device(session, await _device(auth, session, device_id))
    await commit(session, state)


# --- call centers --------------------------------------------------------------------------------------------


class CallCenterIn(BaseModel):
    name: str = Field(max_length=200)
    number: str | None = None
    extension: str | None = None
    wrap_up_seconds: int = Field(default=30, ge=0, le=3600, description="agents return to available after this (J1)")


class CallCenterPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    number: str | None = None
    extension: str | None = None
    wrap_up_seconds: int | None = Field(default=None, ge=0, le=3600)


class MemberOut(Out):
    user_id: int
    joined: bool


class CallCenterOut(Out):
    id: int
    company_id: int
    name: str
    number: str | None
    extension: str | None
    wrap_up_seconds: int
    members: list[MemberOut] = Field(default_factory=list)


async def _call_center_out(session: Session, call_center: CallCenter) -> CallCenterOut:
    members = await admin.call_center_members(session, call_center)
    return CallCenterOut(
        id=call_center.id,
        company_id=call_center.company_id,
        name=call_center.name,
        number=call_center.number,
        extension=call_center.extension,
        wrap_up_seconds=call_center.wrap_up_seconds,
        members=[MemberOut.model_validate(member) for member in members],
    )


@router.post("/companies/{company_id}/call-centers", response_model=CallCenterOut, status_code=201)
async def create_call_center(
    company_id: Id, body: CallCenterIn, auth: Admin, session: Session, state: State
) -> CallCenterOut:
    company = await _company(auth, session, company_id)
    call_center = await admin.create_call_center(
        session,
        company,
        body.name,
        number=body.number,
        extension=body.extension,
        wrap_up_seconds=body.wrap_up_seconds,
    )
    await commit(session, state)
    return await _call_center_out(session, call_center)


@router.get("/companies/{company_id}/call-centers", response_model=list[CallCenterOut])
async def list_call_centers(company_id: Id, auth: Admin, session: Session) -> list[CallCenterOut]:
    await _company(auth, session, company_id)
    return [await _call_center_out(session, cc) for cc in await admin.list_call_centers(session, company_id)]


@router.get("/call-centers/{call_center_id}", response_model=CallCenterOut)
async def get_call_center(call_center_id: Id, auth: Admin, session: Session) -> CallCenterOut:
    return await _call_center_out(session, await _call_center(auth, session, call_center_id))


@router.patch("/call-centers/{call_center_id}", response_model=CallCenterOut)
async def update_call_center(
    call_center_id: Id, body: CallCenterPatch, auth: Admin, session: Session, state: State
) -> CallCenterOut:
    call_center = await _call_center(auth, session, call_center_id)
    await admin.update_call_center(session, call_center, _changes(body))
    await commit(session, state)
    return await _call_center_out(session, call_center)


@router.delete("/call-centers/{call_center_id}", status_code=204)
async def delete_call_center(call_center_id: Id, auth: Admin, session: Session, state: State) -> None:
    await admin.delete_call_center(session, await _call_center(auth, session, call_center_id))
    await commit(session, state)


@router.put("/call-centers/{call_center_id}/members/{user_id}", response_model=CallCenterOut)
async def add_call_center_member(
    call_center_id: Id, user_id: Id, auth: Admin, session: Session, state: State
) -> CallCenterOut:
    call_center = await _call_center(auth, session, call_center_id)
    await admin.add_call_center_member(session, call_center, await _user(auth, session, user_id))
    await commit(session, state)
    return await _call_center_out(session, call_center)


@router.delete("/call-centers/{call_center_id}/members/{user_id}", response_model=CallCenterOut)
async def remove_call_center_member(
    call_center_id: Id, user_id: Id, auth: Admin, session: Session, state: State
) -> CallCenterOut:
    call_center = await _call_center(auth, session, call_center_id)
    await admin.remove_call_center_member(session, call_center, await _user(auth, session, user_id))
    await commit(session, state)
    return await _call_center_out(session, call_center)


# --- hunt groups ---------------------------------------------------------------------------------------------


class HuntGroupIn(BaseModel):
    name: str = Field(max_length=200)
    number: str | None = None
    extension: str | None = None
    policy: Literal["simultaneous", "circular", "linear"] = "simultaneous"
    member_user_ids: list[BodyId] = Field(default_factory=list, max_length=100, description="in hunting order")


class HuntGroupPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    number: str | None = None
    extension: str | None = None
    policy: Literal["simultaneous", "circular", "linear"] | None = None
    member_user_ids: list[BodyId] | None = Field(default=None, max_length=100)


class HuntGroupOut(Out):
    id: int
    company_id: int
    name: str
    number: str | None
    extension: str | None
    policy: str
    member_user_ids: list[int]


@router.post("/companies/{company_id}/hunt-groups", response_model=HuntGroupOut, status_code=201)
async def create_hunt_group(
    company_id: Id, body: HuntGroupIn, auth: Admin, session: Session, state: State
) -> HuntGroup:
    company = await _company(auth, session, company_id)
    hunt_group = await admin.create_hunt_group(
        session,
        company,
        body.name,
        number=body.number,
        extension=body.extension,
        policy=body.policy,
        member_user_ids=body.member_user_ids,
    )
    await commit(session, state)
    return hunt_group


@router.get("/companies/{company_id}/hunt-groups", response_model=list[HuntGroupOut])
async def list_hunt_groups(company_id: Id, auth: Admin, session: Session) -> list[HuntGroup]:
    await _company(auth, session, company_id)
    return await admin.list_hunt_groups(session, company_id)


@router.get("/hunt-groups/{hunt_group_id}", response_model=HuntGroupOut)
async def get_hunt_group(hunt_group_id: Id, auth: Admin, session: Session) -> HuntGroup:
    return await _hunt_group(auth, session, hunt_group_id)


@router.patch("/hunt-groups/{hunt_group_id}", response_model=HuntGroupOut)
async def update_hunt_group(
    hunt_group_id: Id, body: HuntGroupPatch, auth: Admin, session: Session, state: State
) -> HuntGroup:
    hunt_group = await admin.update_hunt_group(session, await _hunt_group(auth, session, hunt_group_id), _changes(body))
    await commit(session, state)
    return hunt_group


@router.delete("/hunt-groups/{hunt_group_id}", status_code=204)
async def delete_hunt_group(hunt_group_id: Id, auth: Admin, session: Session, state: State) -> None:
    await admin.delete_hunt_group(session, await _hunt_group(auth, session, hunt_group_id))
    await commit(session, state)


# --- enterprise phone list -----------------------------------------------------------------------------------


class DirectoryIn(BaseModel):
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    company_name: str = Field(default="", max_length=200)
    number: str
    email: str | None = Field(default=None, max_length=200)


class DirectoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    company_name: str | None = Field(default=None, max_length=200)
    number: str | None = None
    email: str | None = Field(default=None, max_length=200)


class DirectoryOut(Out):
    id: int
    company_id: int
    first_name: str
    last_name: str
    company_name: str
    number: str
    email: str | None


@router.post("/companies/{company_id}/directory", response_model=DirectoryOut, status_code=201)
async def create_directory_entry(
    company_id: Id, body: DirectoryIn, auth: Admin, session: Session, state: State
) -> DirectoryEntry:
    company = await _company(auth, session, company_id)
    entry = await admin.create_directory_entry(session, company, body.model_dump())
    await commit(session, state)
    return entry


@router.get("/companies/{company_id}/directory", response_model=list[DirectoryOut])
async def list_directory(company_id: Id, auth: Admin, session: Session) -> list[DirectoryEntry]:
    await _company(auth, session, company_id)
    return await admin.list_directory(session, company_id)


@router.get("/directory/{entry_id}", response_model=DirectoryOut)
async def get_directory_entry(entry_id: Id, auth: Admin, session: Session) -> DirectoryEntry:
    return await _directory_entry(auth, session, entry_id)


@router.patch("/directory/{entry_id}", response_model=DirectoryOut)
async def update_directory_entry(
    entry_id: Id, body: DirectoryPatch, auth: Admin, session: Session, state: State
) -> DirectoryEntry:
    entry = await admin.update_directory_entry(session, await _directory_entry(auth, session, entry_id), _changes(body))
    await commit(session, state)
    return entry


@router.delete("/directory/{entry_id}", status_code=204)
async def delete_directory_entry(entry_id: Id, auth: Admin, session: Session, state: State) -> None:
    await admin.delete_directory_entry(session, await _directory_entry(auth, session, entry_id))
    await commit(session, state)


# --- outbound policies: call barring and concurrent-call limits (docs/security.md "Toll fraud") --------------

BarringName = Literal["premium", "international", "high_cost"]


class OutboundPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    barred: list[BarringName] = Field(default_factory=list, max_length=3, description="barred classes")
    barred_prefixes: list[str] = Field(
        default_factory=list, max_length=MAX_PREFIXES, description="barred E.164 prefixes, e.g. +3190"
    )
    max_calls: int | None = Field(
        default=None, ge=0, le=MAX_CALLS_LIMIT, description="concurrent outbound calls; null: the exchange's default"
    )


class OutboundPolicyOut(BaseModel):
    barred: list[str]
    barred_prefixes: list[str]
    max_calls: int | None
    stored: bool = Field(description="false: nothing set, the exchange's defaults apply")


def _policy_out(row: OutboundPolicy | None, default_barred: list[str]) -> OutboundPolicyOut:
    if row is None:
        return OutboundPolicyOut(barred=sorted(default_barred), barred_prefixes=[], max_calls=None, stored=False)
    return OutboundPolicyOut(
        barred=list(row.barred), barred_prefixes=list(row.barred_prefixes), max_calls=row.max_calls, stored=True
    )


@router.get("/companies/{company_id}/outbound-policy", response_model=OutboundPolicyOut)
async def get_company_outbound_policy(company_id: Id, auth: Admin, session: Session, state: State) -> OutboundPolicyOut:
    """What the company's users may not call, and how many outbound calls they may hold at once."""
    await _company(auth, session, company_id)
    row = await outbound.policy_row(session, company_id=company_id)
    return _policy_out(row, list(state.settings.outbound_barred_default))


@router.put("/companies/{company_id}/outbound-policy", response_model=OutboundPolicyOut)
async def set_company_outbound_policy(
    company_id: Id, body: OutboundPolicyIn, auth: Admin, session: Session, state: State
) -> OutboundPolicyOut:
    await _company(auth, session, company_id)
    row = await outbound.set_policy(
        session, company_id=company_id, barred=list(body.barred), prefixes=body.barred_prefixes,
        max_calls=body.max_calls,
    )  # fmt: skip
    await commit(session, state)
    return _policy_out(row, [])


@router.get("/users/{user_id}/outbound-policy", response_model=OutboundPolicyOut)
async def get_user_outbound_policy(user_id: Id, auth: Admin, session: Session) -> OutboundPolicyOut:
    """The user's own barring, on top of the company's (a user is barred from more, never less)."""
    await _user(auth, session, user_id)
    return _policy_out(await outbound.policy_row(session, user_id=user_id), [])


@router.put("/users/{user_id}/outbound-policy", response_model=OutboundPolicyOut)
async def set_user_outbound_policy(
    user_id: Id, body: OutboundPolicyIn, auth: Admin, session: Session, state: State
) -> OutboundPolicyOut:
    await _user(auth, session, user_id)
    row = await outbound.set_policy(
        session, user_id=user_id, barred=list(body.barred), prefixes=body.barred_prefixes, max_calls=body.max_calls
    )
    await commit(session, state)
    return _policy_out(row, [])
