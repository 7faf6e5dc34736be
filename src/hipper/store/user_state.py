"""The routing snapshot of one user, built from the database (DESIGN "the call model").

The call path is meant to read a cached snapshot; this builds one (the cache and its outbox invalidation are the
executor's). Services come from `service_settings.load` for the services the user is licensed for, reachability
from the `registrations` table (only bindings that have not expired).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.group_routing import GroupNumber
from hipper.domain.licences import licensed_services
from hipper.domain.moments import aware
from hipper.domain.numbers import is_extension
from hipper.domain.routing import RegisteredDevice, UserState
from hipper.domain.routing.state import DeviceKind
from hipper.domain.services import SERVICES, ServiceSettings
from hipper.store import service_settings
from hipper.store.active_calls import ON_CALL_ELSEWHERE
from hipper.store.db import PooledReads, Reads
from hipper.store.models import Company, Group, Registration, ServiceSetting, SipDevice, User
from hipper.store.registrations import Binding
from hipper.store.users import CONTEXT_COLUMNS, context_from_columns, context_joins


def device_kind(kind: str) -> DeviceKind:
    # Desk phones and softphones on a desk both answer calls to the fixed number; only a device registered as
    # the user's mobile (an app on the handset) counts as the mobile.
    return "mobile" if kind == "mobile" else "desk"


async def registered_devices(session: AsyncSession, user_id: int, now: datetime) -> list[RegisteredDevice]:
    rows = (
        await session.execute(
            select(SipDevice.id, SipDevice.kind, SipDevice.name)
            .join(Registration, Registration.device_id == SipDevice.id)
            .where(Registration.user_id == user_id, SipDevice.user_id == user_id, Registration.expires_at > now)
            .distinct()
            .order_by(SipDevice.id)
        )
    ).all()
    return [RegisteredDevice(id=row.id, kind=device_kind(row.kind), name=row.name) for row in rows]


# Built once with bound parameters: composing a select per call cost measurable CPU on the call path. The last
# column says whether another live node carries a call of the user's (store/presence.py): on PostgreSQL a
# statement of its own cost ≈ 0.25 ms of CPU per call, as a column it is nearly free (evaluated once per statement).
_REACHABLE = (
    select(
        Registration.device_id,
        Registration.contact,
        Registration.source,
        Registration.expires_at,
        Registration.call_id,
        Registration.cseq,
        Registration.user_agent,
        Registration.node,
        SipDevice.user_id.label("device_user_id"),
        SipDevice.kind,
        SipDevice.name,
        ON_CALL_ELSEWHERE.exists().label("on_call_elsewhere"),
    )
    .join(SipDevice, SipDevice.id == Registration.device_id, isouter=True)
    .where(Registration.user_id == bindparam("user_id"), Registration.expires_at > bindparam("now"))
    .order_by(Registration.id)
)


class Reachable(NamedTuple):
    bindings: list[Binding]
    devices: list[RegisteredDevice]
    # Whether a node other than `node_id` carries a call of the user's; None when there was no binding to
    # read it with (ask `ON_CALL_ELSEWHERE` then).
    on_call_elsewhere: bool | None


async def reachable(reads: Reads, user_id: int, now: datetime, node_id: str = "") -> Reachable:
    """The user's live bindings (what `LocationStore.for_user` reads), their registered devices (what
    `registered_devices` reads) and whether another node than `node_id` has them on a call, in one statement:
    the call path needs all three for every call."""
    rows = await reads.rows(_REACHABLE, {"user_id": user_id, "now": now, "node_id": node_id})
    bindings: list[Binding] = []
    devices: dict[int, RegisteredDevice] = {}
    elsewhere: bool | None = None
    for row in rows:
        device_id, contact, source, expires_at, call_id, cseq, user_agent, node, device_user_id, kind, name, busy = row
        elsewhere = bool(busy)
        bindings.append(
            Binding(
                device_id=device_id,
                user_id=user_id,
                contact=contact,
                source=source,
                expires_at=aware(expires_at),
                call_id=call_id,
                cseq=cseq,
                user_agent=user_agent,
                node=node,
            )
        )
        if device_user_id == user_id and device_id not in devices:
            devices[device_id] = RegisteredDevice(id=device_id, kind=device_kind(kind), name=name)
    return Reachable(bindings, [devices[key] for key in sorted(devices)], elsewhere)


# A snapshot in two statements of plain columns, built once: the user's context and their stored documents. A
# snapshot is built on the first call to a user and after every change to them; through an ORM session (the user,
# their company, department and call center for their numbers, then one statement per licensed service) it cost
# ≈ 2–3 ms of CPU (a session, five statements, entity loading), most of a cold call's extra cost.
_SNAPSHOT_USER = context_joins(select(*CONTEXT_COLUMNS).select_from(User)).where(User.id == bindparam("user_id"))
_SNAPSHOT_DOCUMENTS = select(ServiceSetting.service, ServiceSetting.data).where(
    ServiceSetting.user_id == bindparam("user_id")
)


async def read_user_state(
    reads: Reads, user_id: int, *, devices: list[RegisteredDevice], on_call: bool = False
) -> UserState | None:
    """The routing snapshot of the user given by id; None when there is no such user. On the call path's cheap
    reads (engine/snapshots.py), or on an ORM session through `load_user_state`."""
    rows = await reads.rows(_SNAPSHOT_USER, {"user_id": user_id})
    if not rows:
        return None
    context = context_from_columns(user_id, rows[0])
    documents: dict[str, ServiceSettings] = {}
    services = [(name, SERVICES.get(name)) for name in licensed_services(context.licences)]
    if any(settings_class is not None for _, settings_class in services):
        stored = {service: data for service, data in await reads.rows(_SNAPSHOT_DOCUMENTS, {"user_id": user_id})}
        for name, settings_class in services:
            if settings_class is not None:
                documents[name] = service_settings.document(settings_class, user_id, stored.get(settings_class.service))
    return UserState(
        user_id=user_id,
        extension=context.extension,
        numbers=context.numbers,
        licences=context.licences,
        services=documents,
        on_call=on_call,
        devices=tuple(devices),
    )


async def load_user_state(
    session: AsyncSession,
    user: User,
    now: datetime,
    *,
    on_call: bool = False,
    devices: list[RegisteredDevice] | None = None,
) -> UserState:
    """`read_user_state` on the caller's ORM session (the API's routes), for a user it holds; the registered
    devices are read unless given."""
    if devices is None:
        devices = await registered_devices(session, user.id, now)
    state = await read_user_state(PooledReads(session), user.id, devices=devices, on_call=on_call)
    if state is None:  # deleted by another transaction since the caller read it
        raise LookupError(f"user {user.id} no longer exists")
    return state


async def is_colleague(session: AsyncSession, user: User, dialled: str) -> bool:
    """Whether `dialled` (normalised) reaches another user of the same company: an internal call."""
    if user.company_id is None:
        return False
    match = User.extension == dialled if is_extension(dialled) else User.direct_number == dialled
    found = await session.execute(
        select(User.id).where(User.company_id == user.company_id, User.id != user.id, match).limit(1)
    )
    return found.first() is not None


async def group_number_of(session: AsyncSession, number: str) -> GroupNumber | None:
    """The company or department a dialled number belongs to, for `plan_group_call`; None if it is neither."""
    company = (await session.execute(select(Company).where(Company.number == number))).scalar_one_or_none()
    if company is not None:
        return GroupNumber(
            kind="company",
            name=company.name,
            number=number,
            day_destination=company.day_destination,
            night_destination=company.night_destination,
            night_mode=company.night_mode,
        )
    row = (
        await session.execute(
            select(Group, Company.night_mode)
            .join(Company, Company.id == Group.company_id)
            .where(Group.number == number)
        )
    ).one_or_none()
    if row is None:
        return None
    group, night_mode = row
    # A department has no night switch of its own: it follows its company's night mode.
    return GroupNumber(
        kind="department",
        name=group.name,
        number=number,
        day_destination=group.day_destination,
        night_destination=group.night_destination,
        night_mode=bool(night_mode),
    )
