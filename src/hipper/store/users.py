"""Users and what the domain needs to know about them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ScalarSelect, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.context import UserContext
from hipper.store.models import CallCenter, CallCenterMember, Company, Group, User

SelectT = TypeVar("SelectT", bound=Select[Any])


async def by_username(session: AsyncSession, username: str) -> User | None:
    return (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()


def call_center_number_of(user_id: Any) -> ScalarSelect[str | None]:
    """The number of the user's first call center that has one, as a scalar subquery (`user_id` a column or value)."""
    return (
        select(CallCenter.number)
        .join(CallCenterMember, CallCenterMember.call_center_id == CallCenter.id)
        .where(CallCenterMember.user_id == user_id, CallCenter.number.is_not(None))
        .order_by(CallCenter.id)
        .limit(1)
        .scalar_subquery()
    )


def numbers_from(
    user: User, company: Company | None, group: Group | None, call_center_number: str | None
) -> dict[str, str]:
    """Every number of the user by kind (SPEC A4): company, direct, department, mobile, call center."""
    return numbers_by_kind(
        company.number if company is not None else None,
        user.direct_number,
        group.number if group is not None else None,
        user.mobile_number,
        call_center_number,
    )


def numbers_by_kind(
    company: str | None, direct: str | None, department: str | None, mobile: str | None, call_center: str | None
) -> dict[str, str]:
    """`numbers_from` for plain column values (a lookup that reads no ORM entities)."""
    numbers: dict[str, str] = {}
    for kind, number in (
        ("company", company),
        ("direct", direct),
        ("department", department),
        ("mobile", mobile),
        ("call_center", call_center),
    ):
        if number:
            numbers[kind] = number
    return numbers


# A user's `UserContext` as plain columns, no ORM entities (the settings routes' lookup, api/deps.py, and the
# routing snapshot, store/user_state.py): extension, licences, then the numbers in `numbers_by_kind`'s order. A
# select of them joins the company and the department with `context_joins`; `context_from_columns` builds it.
CONTEXT_COLUMNS = (
    User.extension,
    User.licences,
    Company.number,
    User.direct_number,
    Group.number,
    User.mobile_number,
    call_center_number_of(User.id),
)


def context_joins(statement: SelectT) -> SelectT:
    """`statement` (which selects from `User`) joined with what `CONTEXT_COLUMNS` reads besides the user."""
    return statement.outerjoin(Company, Company.id == User.company_id).outerjoin(Group, Group.id == User.group_id)


def context_from_columns(user_id: int, columns: Sequence[Any]) -> UserContext:
    """The context from the values of `CONTEXT_COLUMNS`, in that order."""
    extension, licences, *numbers = columns
    return UserContext(
        user_id=user_id, extension=extension, numbers=numbers_by_kind(*numbers), licences=frozenset(licences or ())
    )


async def numbers_of(session: AsyncSession, user: User) -> dict[str, str]:
    """Every number of the user by kind (SPEC A4), read from the database."""
    company = await session.get(Company, user.company_id) if user.company_id is not None else None
    group = await session.get(Group, user.group_id) if user.group_id is not None else None
    call_center_number = (await session.execute(select(call_center_number_of(user.id)))).scalar_one_or_none()
    return numbers_from(user, company, group, call_center_number)


def context_from(user: User, numbers: dict[str, str]) -> UserContext:
    return UserContext(
        user_id=user.id, extension=user.extension, numbers=numbers, licences=frozenset(user.licences or ())
    )


async def context_of(session: AsyncSession, user: User) -> UserContext:
    return context_from(user, await numbers_of(session, user))
