"""Who a dialled number is: a user (and which of their numbers), a company/department number, or outside.

Reads the database for each call (a few indexed lookups); the routing snapshots themselves are cached by
`engine/snapshots.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.domain.group_routing import GroupNumber
from hipper.domain.numbers import NumberError, is_extension, normalise
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


async def resolve(session: AsyncSession, dialled: str, company_id: int | None, region: str) -> Resolved:
    """Extensions are looked up inside the caller's company (no company: nowhere); numbers everywhere."""
    try:
        number = normalise(dialled, region)
    except NumberError:
        return Resolved("unknown", dialled)
    if is_extension(number):
        if company_id is None:
            return Resolved("unknown", number)
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
