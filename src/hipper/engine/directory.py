"""Who a dialled number is: a user (and which of their numbers), a company/department number, or outside.

Reads the database for each call (a few indexed lookups); the routing snapshots themselves are cached by
`engine/snapshots.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.domain.group_routing import GroupNumber
from hipper.domain.numbers import NumberError, is_extension, normalise
from hipper.store.db import Reads
from hipper.store.group_calls import GroupRef, find_by_extension, find_by_number
from hipper.store.models import Company, Group, User
from hipper.store.user_state import group_number_of


@dataclass(frozen=True)
class Callee:
    user_id: int
    company_id: int | None
    called: Literal["fixed", "mobile"]
    extension: str | None
    name: str


@dataclass(frozen=True)
class Resolved:
    kind: Literal["user", "group", "hunt_group", "call_center", "external", "unknown"]
    number: str
    callee: Callee | None = None
    group: GroupNumber | None = None
    queue: GroupRef | None = None  # a hunt group or call center (apps/groups.py)
    # The company a group number belongs to: its destinations' extensions are looked up there.
    company_id: int | None = None


def _callee(user: User, called: Literal["fixed", "mobile"]) -> Callee:
    name = f"{user.first_name} {user.last_name}".strip() or user.username
    return Callee(user.id, user.company_id, called, user.extension, name)


# `resolve`'s user lookups as plain columns, built once, for `resolve_user` (the call path's cheap reads).
_USER_COLUMNS = (User.id, User.company_id, User.extension, User.first_name, User.last_name, User.username,
                 User.direct_number)  # fmt: skip
_USER_BY_EXTENSION = select(*_USER_COLUMNS).where(
    User.company_id == bindparam("company_id"), User.extension == bindparam("number")
)
_USER_BY_NUMBER = (
    select(*_USER_COLUMNS)
    .where(or_(User.direct_number == bindparam("number"), User.mobile_number == bindparam("number")))
    .limit(1)
)


def _normalised(dialled: str, company_id: int | None, region: str) -> str | Resolved:
    """The dialled number normalised, or "unknown" when it is no number or an extension without a company."""
    try:
        number = normalise(dialled, region)
    except NumberError:
        return Resolved("unknown", dialled)
    if is_extension(number) and company_id is None:
        return Resolved("unknown", number)
    return number


async def resolve_user(reads: Reads, dialled: str, company_id: int | None, region: str) -> Resolved | None:
    """What `resolve` answers when the number is a user's or cannot be one (unknown); None when it is neither
    and `resolve` must look further (groups, hunt groups, call centers, outside). The same lookups in the same
    order as `resolve`, on `Reads` instead of an ORM session: a user's first call cost an ORM session for this."""
    number = _normalised(dialled, company_id, region)
    if isinstance(number, Resolved):
        return number
    if is_extension(number):
        rows = await reads.rows(_USER_BY_EXTENSION, {"company_id": company_id, "number": number})
    else:
        rows = await reads.rows(_USER_BY_NUMBER, {"number": number})
    if not rows:
        return None
    if len(rows) > 1:
        return None  # `resolve` would refuse it (scalar_one_or_none): let it
    user_id, user_company, extension, first_name, last_name, username, direct_number = rows[0]
    called: Literal["fixed", "mobile"] = "fixed" if is_extension(number) or direct_number == number else "mobile"
    name = f"{first_name} {last_name}".strip() or username
    return Resolved("user", number, Callee(user_id, user_company, called, extension, name))


async def resolve(session: AsyncSession, dialled: str, company_id: int | None, region: str) -> Resolved:
    """Extensions are looked up inside the caller's company (no company: nowhere); numbers everywhere."""
    number = _normalised(dialled, company_id, region)
    if isinstance(number, Resolved):
        return number
    if company_id is not None and is_extension(number):  # (no company: `_normalised` said unknown)
        user = (
            await session.execute(select(User).where(User.company_id == company_id, User.extension == number))
        ).scalar_one_or_none()
        if user is not None:
            return Resolved("user", number, _callee(user, "fixed"))
        queue = await find_by_extension(session, company_id, number)
        if queue is not None:
            return Resolved(queue.kind, number, queue=queue, company_id=queue.company_id)
        return Resolved("unknown", number)
    user = (
        await session.execute(
            select(User).where(or_(User.direct_number == number, User.mobile_number == number)).limit(1)
        )
    ).scalar_one_or_none()
    if user is not None:
        return Resolved("user", number, _callee(user, "fixed" if user.direct_number == number else "mobile"))
    group = await group_number_of(session, number)
    if group is not None:
        owner = (await session.execute(select(Company.id).where(Company.number == number))).scalar_one_or_none()
        if owner is None:
            owner = (await session.execute(select(Group.company_id).where(Group.number == number))).scalar_one_or_none()
        return Resolved("group", number, group=group, company_id=owner)
    queue = await find_by_number(session, number)
    if queue is not None:
        return Resolved(queue.kind, number, queue=queue, company_id=queue.company_id)
    return Resolved("external", number)


async def user_row(sessions: async_sessionmaker[AsyncSession], user_id: int) -> User | None:
    async with sessions() as session:
        return await session.get(User, user_id)


async def mobile_user(sessions: async_sessionmaker[AsyncSession], number: str, region: str) -> User | None:
    """The user whose mobile number this is (a call from their own handset through the mobile network)."""
    try:
        normalised = normalise(number, region)
    except NumberError:
        return None
    async with sessions() as session:
        return (await session.execute(select(User).where(User.mobile_number == normalised))).scalar_one_or_none()
