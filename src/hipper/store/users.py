"""Users and what the domain needs to know about them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.context import UserContext
from hipper.store.models import CallCenter, CallCenterMember, Company, Group, User


async def by_username(session: AsyncSession, username: str) -> User | None:
    return (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def numbers_of(session: AsyncSession, user: User) -> dict[str, str]:
    """Every number of the user by kind (SPEC A4): company, direct, department, mobile, call center."""
    numbers: dict[str, str] = {}
    if user.company_id is not None:
        company = await session.get(Company, user.company_id)
        if company is not None and company.number:
            numbers["company"] = company.number
    if user.direct_number:
        numbers["direct"] = user.direct_number
    if user.group_id is not None:
        group = await session.get(Group, user.group_id)
        if group is not None and group.number:
            numbers["department"] = group.number
    if user.mobile_number:
        numbers["mobile"] = user.mobile_number
    call_center_number = (
        await session.execute(
            select(CallCenter.number)
            .join(CallCenterMember, CallCenterMember.call_center_id == CallCenter.id)
            .where(CallCenterMember.user_id == user.id, CallCenter.number.is_not(None))
            .order_by(CallCenter.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if call_center_number:
        numbers["call_center"] = call_center_number
    return numbers


async def context_of(session: AsyncSession, user: User) -> UserContext:
    return UserContext(
        user_id=user.id,
        extension=user.extension,
        numbers=await numbers_of(session, user),
        licences=frozenset(user.licences or ()),
    )
