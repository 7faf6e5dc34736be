"""Outbound policies (call barring, concurrent-call limits) of companies and users: read for the call path, set
by the administrator through the API and the CLI (rules in domain/barring.py)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.barring import Policy, PolicyError, parse_classes, parse_prefixes
from hipper.domain.errors import InvalidSetting
from hipper.store.models import OutboundPolicy

# A limit beyond this is a typo, not a policy (and must fit the INTEGER column).
MAX_CALLS_LIMIT = 100_000


def as_policy(row: OutboundPolicy | None, default_barred: Iterable[str] = ()) -> Policy:
    """The domain's view of a stored row; no row: the default classes and no limit of its own."""
    if row is None:
        return Policy(parse_classes(tuple(default_barred)))
    return Policy(parse_classes(tuple(row.barred)), tuple(row.barred_prefixes), row.max_calls)


async def policy_row(session: AsyncSession, *, company_id: int | None = None, user_id: int | None = None) -> (
    OutboundPolicy | None
):  # fmt: skip
    column = OutboundPolicy.company_id if company_id is not None else OutboundPolicy.user_id
    key = company_id if company_id is not None else user_id
    return (await session.execute(select(OutboundPolicy).where(column == key))).scalar_one_or_none()


async def policies_of(
    session: AsyncSession, user_id: int, company_id: int | None, default_barred: Iterable[str]
) -> tuple[Policy, Policy]:
    """The company's and the user's policy, in one query."""
    conditions = [OutboundPolicy.user_id == user_id]
    if company_id is not None:
        conditions.append(OutboundPolicy.company_id == company_id)
    rows = (await session.execute(select(OutboundPolicy).where(or_(*conditions)))).scalars().all()
    company_row = next((row for row in rows if row.company_id is not None), None)
    user_row = next((row for row in rows if row.user_id is not None), None)
    company = as_policy(company_row, default_barred) if company_id is not None else Policy()
    return company, as_policy(user_row)


async def set_policy(
    session: AsyncSession,
    *,
    company_id: int | None = None,
    user_id: int | None = None,
    barred: list[str],
    prefixes: list[str],
    max_calls: int | None,
) -> OutboundPolicy:
    """Replace a company's or a user's policy (InvalidSetting naming the field for a bad value)."""
    try:
        classes = parse_classes(barred)
    except PolicyError as error:
        raise InvalidSetting("barred", str(error)) from error
    try:
        clean_prefixes = parse_prefixes(prefixes)
    except PolicyError as error:
        raise InvalidSetting("barred_prefixes", str(error)) from error
    if max_calls is not None and not 0 <= max_calls <= MAX_CALLS_LIMIT:
        raise InvalidSetting("max_calls", f"must be between 0 and {MAX_CALLS_LIMIT}, or null for the default")
    row = await policy_row(session, company_id=company_id, user_id=user_id)
    if row is None:
        row = OutboundPolicy(company_id=company_id, user_id=user_id)
        session.add(row)
    row.barred = sorted(c.value for c in classes)
    row.barred_prefixes = list(clean_prefixes)
    row.max_calls = max_calls
    await session.flush()
    return row
