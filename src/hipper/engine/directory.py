"""Who a dialled number is: a user (and which of their numbers), a company/department number, or outside.

Reads the database for each call (a few indexed lookups); the routing snapshots themselves are cached by
`engine/snapshots.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from hipper.domain.group_routing import GroupNumber
from hipper.domain.numbers import NumberError, is_extension, normalise
from hipper.store.db import AnySelect, PooledReads, Reads
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


# What a dialled number reaches inside the exchange: its own routing carries the call, nothing leaves through the
# trunk on the caller's account (a user of any company, a company or department number, a hunt group, a call center).
INTERNAL_KINDS = ("user", "group", "hunt_group", "call_center")


@dataclass(frozen=True)
class Resolved:
    kind: Literal["user", "group", "hunt_group", "call_center", "external", "unknown"]
    number: str
    callee: Callee | None = None
    group: GroupNumber | None = None
    queue: GroupRef | None = None  # a hunt group or call center (apps/groups.py)
    # The company a group number belongs to: its destinations' extensions are looked up there.
    company_id: int | None = None

    @property
    def internal(self) -> bool:
        """Reached inside the exchange (`INTERNAL_KINDS`): no call out, so no call barring."""
        return self.kind in INTERNAL_KINDS


# The user lookups as plain columns, built once, on `Reads` (the call path's cheap reads; an ORM session through
# `PooledReads` elsewhere): a user's first call cost an ORM session for them.
_USER_COLUMNS = (User.id, User.company_id, User.extension, User.first_name, User.last_name, User.username,
                 User.direct_number)  # fmt: skip
# (company_id, extension) is unique: at most one row.
_USER_BY_EXTENSION = select(*_USER_COLUMNS).where(
    User.company_id == bindparam("company_id"), User.extension == bindparam("number")
)
_USER_BY_NUMBER = (
    select(*_USER_COLUMNS)
    .where(or_(User.direct_number == bindparam("number"), User.mobile_number == bindparam("number")))
    .limit(1)
)


@dataclass(frozen=True)
class NotAUser:
    """A usable number that is no user's (`resolve_user`): `resolve_other` says what it is."""

    number: str
    company_id: int | None


def _normalised(dialled: str, company_id: int | None, region: str) -> str | Resolved:
    """The dialled number normalised, or "unknown" when it is no number or an extension without a company."""
    try:
        number = normalise(dialled, region)
    except NumberError:
        return Resolved("unknown", dialled)
    if is_extension(number) and company_id is None:
        return Resolved("unknown", number)
    return number


async def resolve_user(reads: Reads, dialled: str, company_id: int | None, region: str) -> Resolved | NotAUser:
    """The first half of `resolve`: the user whose number this is, or "unknown" when it cannot be a number
    (extensions are looked up inside the caller's company; numbers everywhere); `NotAUser` for the rest."""
    number = _normalised(dialled, company_id, region)
    if isinstance(number, Resolved):
        return number
    if is_extension(number):
        rows = await reads.rows(_USER_BY_EXTENSION, {"company_id": company_id, "number": number})
    else:
        rows = await reads.rows(_USER_BY_NUMBER, {"number": number})
    if not rows:
        return NotAUser(number, company_id)
    user_id, user_company, extension, first_name, last_name, username, direct_number = rows[0]
    called: Literal["fixed", "mobile"] = "fixed" if is_extension(number) or direct_number == number else "mobile"
    name = f"{first_name} {last_name}".strip() or username
    return Resolved("user", number, Callee(user_id, user_company, called, extension, name))


async def resolve_other(session: AsyncSession, found: NotAUser) -> Resolved:
    """The second half of `resolve`, for a number `resolve_user` found no user for: a hunt group or call center
    extension, a company or department number, a hunt group or call center number, or outside."""
    number, company_id = found.number, found.company_id
    if company_id is not None and is_extension(number):  # (no company: `_normalised` said unknown)
        queue = await find_by_extension(session, company_id, number)
        if queue is not None:
            return Resolved(queue.kind, number, queue=queue, company_id=queue.company_id)
        return Resolved("unknown", number)
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


async def resolve(session: AsyncSession, dialled: str, company_id: int | None, region: str) -> Resolved:
    """Who a dialled number is: `resolve_user`, then `resolve_other` (the call path's cache, engine/snapshots.py,
    runs the two halves on different connections)."""
    found = await resolve_user(PooledReads(session), dialled, company_id, region)
    return found if isinstance(found, Resolved) else await resolve_other(session, found)


async def user_row(sessions: async_sessionmaker[AsyncSession], user_id: int) -> User | None:
    async with sessions() as session:
        return await session.get(User, user_id)


@dataclass(frozen=True)
class CallerUser:
    """A user placing a call, as the call shows them."""

    id: int
    company_id: int | None
    number: str | None  # their extension, else their direct (from a device) or mobile (from the handset) number
    name: str  # "first last", else their username


def _shown_with(number: InstrumentedAttribute[str | None]) -> AnySelect:
    """The columns a `CallerUser` is made of (`_caller`), `number` being the one shown without an extension."""
    return select(User.id, User.company_id, User.extension, number, User.first_name, User.last_name, User.username)


_CALLER_USER = _shown_with(User.direct_number).where(User.id == bindparam("user_id"))
_HANDSET_USER = _shown_with(User.mobile_number).where(User.mobile_number == bindparam("number"))


async def caller_user(reads: Reads, user_id: int) -> CallerUser | None:
    """The user a device (or a callback leg) calls for, read fresh for every call on the call path's cheap reads
    (on a SQLite file one statement on the loop): ≈ 400 → 11 µs of CPU a call against an ORM session's `get`."""
    return _caller(await reads.rows(_CALLER_USER, {"user_id": user_id}))


async def mobile_user(reads: Reads, number: str, region: str) -> CallerUser | None:
    """The user whose mobile number this is (a call from their own handset through the mobile network), read like
    `caller_user`."""
    try:
        normalised = normalise(number, region)
    except NumberError:
        return None
    return _caller(await reads.rows(_HANDSET_USER, {"number": normalised}))


def _caller(rows: Sequence[Any]) -> CallerUser | None:
    if not rows:
        return None
    id_, company_id, extension, other_number, first_name, last_name, username = rows[0]
    return CallerUser(id_, company_id, extension or other_number, f"{first_name} {last_name}".strip() or username)
