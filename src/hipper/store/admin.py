"""Administration writes (companies, groups, users) shared by the admin API, the CLI and the demo."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain import licences as licence_rules
from hipper.domain.numbers import normalise
from hipper.passwords import Hasher
from hipper.store.events import add_event
from hipper.store.models import Company, Group, User


async def create_company(session: AsyncSession, name: str, number: str | None = None) -> Company:
    company = Company(name=name, number=normalise(number) if number else None, created_at=datetime.now(UTC))
    session.add(company)
    await session.flush()
    return company


async def create_group(session: AsyncSession, company: Company, name: str, number: str | None = None) -> Group:
    group = Group(company_id=company.id, name=name, number=normalise(number) if number else None)
    session.add(group)
    await session.flush()
    return group


async def create_user(
    session: AsyncSession,
    hasher: Hasher,
    *,
    username: str,
    password: str,
    company: Company | None = None,
    group: Group | None = None,
    first_name: str = "",
    last_name: str = "",
    email: str | None = None,
    extension: str | None = None,
    direct_number: str | None = None,
    mobile_number: str | None = None,
    licences: list[str] | None = None,
    role: str = "user",
) -> User:
    user = User(
        username=username,
        password_hash=await hasher.hash(password),
        company_id=company.id if company else None,
        group_id=group.id if group else None,
        first_name=first_name,
        last_name=last_name,
        email=email,
        extension=extension,
        direct_number=normalise(direct_number) if direct_number else None,
        mobile_number=normalise(mobile_number) if mobile_number else None,
        licences=sorted(licence_rules.expand(licences or [])),
        role=role,
        failed_logins=0,
        failed_pins=0,
        created_at=datetime.now(UTC),
    )
    session.add(user)
    await session.flush()
    add_event(session, user.id, "user.created", {"username": username}, company_id=user.company_id)
    return user
