"""What call processing reads and writes for hunt-group and call-center calls (apps/groups.py).

Finding a group by its number or extension, the circular hunt group's rotation, and the call center's members
with their stored agent state. The agent's wrap-up itself is `store.call_centers.call_center_call_ended`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain.agent_state import AgentState
from hipper.domain.moments import aware
from hipper.domain.services import CallCenterAgent
from hipper.store.models import CallCenter, CallCenterMember, CallLog, HuntGroup, HuntGroupRotation, ServiceSetting


@dataclass(frozen=True)
class GroupRef:
    """A hunt group or call center a dialled number reached."""

    kind: Literal["hunt_group", "call_center"]
    id: int
    company_id: int
    name: str


async def _first(
    session: AsyncSession, hunt_group_filter: ColumnElement[bool], call_center_filter: ColumnElement[bool]
) -> GroupRef | None:
    """One statement for both tables (every call to an outside number asks, so it should cost one round trip)."""
    query = union_all(
        select(literal("hunt_group").label("kind"), HuntGroup.id, HuntGroup.company_id, HuntGroup.name).where(
            hunt_group_filter
        ),
        select(literal("call_center").label("kind"), CallCenter.id, CallCenter.company_id, CallCenter.name).where(
            call_center_filter
        ),
    ).limit(1)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    kind: Literal["hunt_group", "call_center"] = "hunt_group" if row[0] == "hunt_group" else "call_center"
    return GroupRef(kind, row[1], row[2], row[3])


async def find_by_extension(session: AsyncSession, company_id: int, extension: str) -> GroupRef | None:
    return await _first(
        session,
        (HuntGroup.company_id == company_id) & (HuntGroup.extension == extension),
        (CallCenter.company_id == company_id) & (CallCenter.extension == extension),
    )


async def find_by_number(session: AsyncSession, number: str) -> GroupRef | None:
    return await _first(session, HuntGroup.number == number, CallCenter.number == number)


async def hunt_group(session: AsyncSession, hunt_group_id: int) -> tuple[HuntGroup, int | None] | None:
    """The group and the member who took its last call."""
    group = await session.get(HuntGroup, hunt_group_id)
    if group is None:
        return None
    rotation = await session.get(HuntGroupRotation, hunt_group_id)
    return group, rotation.last_user_id if rotation is not None else None


async def took_call(session: AsyncSession, hunt_group_id: int, user_id: int) -> None:
    """A member answered a call of this group: a circular group starts after them next time. The caller commits."""
    rotation = await session.get(HuntGroupRotation, hunt_group_id)
    if rotation is None:
        session.add(HuntGroupRotation(hunt_group_id=hunt_group_id, last_user_id=user_id))
    else:
        rotation.last_user_id = user_id


@dataclass(frozen=True)
class QueueMember:
    user_id: int
    joined: bool
    acd: AgentState
    last_call_ended: datetime | None


async def call_center(session: AsyncSession, call_center_id: int) -> CallCenter | None:
    return await session.get(CallCenter, call_center_id)


async def queue_members(session: AsyncSession, call_center_id: int) -> list[QueueMember]:
    """Every member with `joined`, their stored ACD state and when their last answered call ended (two queries)."""
    rows = (
        await session.execute(
            select(CallCenterMember.user_id, CallCenterMember.joined, ServiceSetting.data)
            .outerjoin(
                ServiceSetting,
                (ServiceSetting.user_id == CallCenterMember.user_id)
                & (ServiceSetting.service == CallCenterAgent.service),
            )
            .where(CallCenterMember.call_center_id == call_center_id)
            .order_by(CallCenterMember.user_id)
        )
    ).all()
    ended = await last_calls_ended(session, [row[0] for row in rows])
    members = []
    for user_id, joined, data in rows:
        stored = CallCenterAgent.model_validate(data) if data is not None else CallCenterAgent()
        acd = AgentState(stored.state, since=stored.state_since, wrap_up_until=stored.wrap_up_until)
        members.append(QueueMember(user_id, bool(joined), acd, ended.get(user_id)))
    return members


async def last_calls_ended(session: AsyncSession, user_ids: Sequence[int]) -> dict[int, datetime]:
    """When each user's last answered call ended (their call list; a deleted row is simply not counted)."""
    if not user_ids:
        return {}
    rows = await session.execute(
        select(CallLog.user_id, func.max(CallLog.ended_at))
        .where(CallLog.user_id.in_(user_ids), CallLog.answered_at.is_not(None))
        .group_by(CallLog.user_id)
    )
    found: dict[int, datetime] = {}
    for user_id, ended in rows.all():
        if ended is not None:
            # SQLite gives naive datetimes back: they were stored as UTC.
            found[user_id] = aware(ended)
    return found
