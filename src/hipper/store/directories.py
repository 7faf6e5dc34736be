"""The contact lists (SPEC E1): colleagues from the users table, and the enterprise and personal phone lists.

Every query is scoped twice: by the user's company (colleagues, the enterprise list) and, for the personal
list, by the user's own id — a personal entry of someone else is simply never found.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.contacts import Contact, ContactList, PersonalEntry, make_contact
from hipper.store.events import add_event
from hipper.store.models import Company, DirectoryEntry, Group, User


async def colleagues(session: AsyncSession, user: User) -> list[Contact]:
    if user.company_id is None:
        return []
    company = await session.get(Company, user.company_id)
    company_name = company.name if company is not None else ""
    result = await session.execute(
        select(User, Group.number)
        .outerjoin(Group, Group.id == User.group_id)
        .where(User.company_id == user.company_id, User.id != user.id, User.role == "user")
    )
    return [
        make_contact(
            "group",
            colleague.id,
            first_name=colleague.first_name,
            last_name=colleague.last_name or ("" if colleague.first_name else colleague.username),
            company_name=company_name,
            email=colleague.email,
            extension=colleague.extension,
            numbers=[
                ("extension", colleague.extension),
                ("direct", colleague.direct_number),
                ("work", department_number),
                ("mobile", colleague.mobile_number),
            ],
        )
        for colleague, department_number in result.all()
    ]


def entry_contact(list_: ContactList, entry: DirectoryEntry) -> Contact:
    return make_contact(
        list_,
        entry.id,
        first_name=entry.first_name,
        last_name=entry.last_name,
        company_name=entry.company_name,
        email=entry.email,
        numbers=[("other", entry.number)],
    )


async def enterprise(session: AsyncSession, user: User) -> list[Contact]:
    if user.company_id is None:
        return []
    result = await session.execute(
        select(DirectoryEntry).where(DirectoryEntry.company_id == user.company_id, DirectoryEntry.user_id.is_(None))
    )
    return [entry_contact("enterprise", entry) for entry in result.scalars()]


async def personal_entries(session: AsyncSession, user_id: int) -> list[DirectoryEntry]:
    result = await session.execute(select(DirectoryEntry).where(DirectoryEntry.user_id == user_id))
    return list(result.scalars())


async def personal(session: AsyncSession, user: User) -> list[Contact]:
    return [entry_contact("personal", entry) for entry in await personal_entries(session, user.id)]


async def contacts(session: AsyncSession, user: User, lists: Sequence[ContactList]) -> list[Contact]:
    found: list[Contact] = []
    if "group" in lists:
        found += await colleagues(session, user)
    if "enterprise" in lists:
        found += await enterprise(session, user)
    if "personal" in lists:
        found += await personal(session, user)
    return found


async def count_personal(session: AsyncSession, user_id: int) -> int:
    result = await session.execute(
        select(func.count()).select_from(DirectoryEntry).where(DirectoryEntry.user_id == user_id)
    )
    return int(result.scalar_one())


async def get_personal(session: AsyncSession, user_id: int, entry_id: int) -> DirectoryEntry | None:
    """The user's own entry; None both when it does not exist and when it is someone else's."""
    result = await session.execute(
        select(DirectoryEntry).where(DirectoryEntry.user_id == user_id, DirectoryEntry.id == entry_id)
    )
    return result.scalar_one_or_none()


def entry_of(row: DirectoryEntry) -> PersonalEntry:
    return PersonalEntry.model_construct(
        first_name=row.first_name,
        last_name=row.last_name,
        company_name=row.company_name,
        number=row.number,
        email=row.email,
    )


async def add_personal(
    session: AsyncSession, user: User, company_id: int, entries: Sequence[PersonalEntry]
) -> list[DirectoryEntry]:
    """Add entries to the user's personal list and queue one event; the caller commits."""
    rows = [
        DirectoryEntry(
            company_id=company_id,
            user_id=user.id,
            first_name=entry.first_name,
            last_name=entry.last_name,
            company_name=entry.company_name,
            number=entry.number,
            email=entry.email,
        )
        for entry in entries
    ]
    session.add_all(rows)
    await session.flush()
    if rows:
        add_event(session, user.id, "contacts.personal.added", {"ids": [row.id for row in rows]})
    return rows


def update_personal(session: AsyncSession, row: DirectoryEntry, entry: PersonalEntry) -> None:
    row.first_name = entry.first_name
    row.last_name = entry.last_name
    row.company_name = entry.company_name
    row.number = entry.number
    row.email = entry.email
    assert row.user_id is not None  # only personal entries are changed here
    add_event(session, row.user_id, "contacts.personal.changed", {"id": row.id})


async def delete_personal(session: AsyncSession, row: DirectoryEntry) -> None:
    assert row.user_id is not None
    await session.delete(row)
    add_event(session, row.user_id, "contacts.personal.deleted", {"id": row.id})
