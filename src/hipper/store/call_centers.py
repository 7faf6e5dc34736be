"""The call-center agent as stored: ACD state in the agent's settings document, `joined` on the membership rows.

The membership rows and wrap-up times are the administrator's (`hipper.store.admin`); the agent changes only
`joined` and their state. `calls_to_mobile` lives in the fixed-mobile document (`group_calls_to_mobile`): the
manual shows the one option on two screens (§7.6.2, §7.7), so it has one home.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain import agent_state
from hipper.domain.agent_state import AgentState
from hipper.domain.context import UserContext
from hipper.domain.services import CallCenterAgent, CallCenterMembership, FixedMobile, change
from hipper.store import service_settings
from hipper.store.models import CallCenter, CallCenterMember, ServiceSetting

CLOCK_FIELDS = frozenset({"state_since", "wrap_up_until"})


async def memberships(session: AsyncSession, user_id: int) -> list[tuple[CallCenter, CallCenterMember]]:
    """The call centers the administrator made this user a member of, in a stable order."""
    rows = await session.execute(
        select(CallCenter, CallCenterMember)
        .join(CallCenterMember, CallCenterMember.call_center_id == CallCenter.id)
        .where(CallCenterMember.user_id == user_id)
        .order_by(CallCenter.id)
    )
    return [(row[0], row[1]) for row in rows.all()]


def _agent(stored: CallCenterAgent) -> AgentState:
    return AgentState(stored.state, since=stored.state_since, wrap_up_until=stored.wrap_up_until)


async def _stored(session: AsyncSession, user_id: int) -> CallCenterAgent:
    stored = await service_settings.load(session, user_id, CallCenterAgent)
    assert isinstance(stored, CallCenterAgent)
    return stored


async def _calls_to_mobile(session: AsyncSession, user_id: int, ctx: UserContext) -> bool:
    if not ctx.has("fixed-mobile"):
        return False
    fixed_mobile = await service_settings.load(session, user_id, FixedMobile)
    assert isinstance(fixed_mobile, FixedMobile)
    return fixed_mobile.group_calls_to_mobile


def _document(
    agent: AgentState, rows: list[tuple[CallCenter, CallCenterMember]], joined: Mapping[int, bool], to_mobile: bool
) -> CallCenterAgent:
    return CallCenterAgent(
        state=agent.state,
        state_since=agent.since,
        wrap_up_until=agent.wrap_up_until,
        calls_to_mobile=to_mobile,
        call_centers=[
            CallCenterMembership(id=center.id, name=center.name, number=center.number, joined=joined[center.id])
            for center, _member in rows
        ],
        wrap_up_seconds=max((center.wrap_up_seconds for center, _member in rows), default=0),
    )


async def load_agent(session: AsyncSession, user_id: int, ctx: UserContext, now: datetime) -> CallCenterAgent:
    """The agent document as it is at `now` (a finished wrap-up reads as available)."""
    rows = await memberships(session, user_id)
    agent = agent_state.at(_agent(await _stored(session, user_id)), now)
    joined = {center.id: member.joined for center, member in rows}
    return _document(agent, rows, joined, await _calls_to_mobile(session, user_id, ctx))


async def change_agent(
    session: AsyncSession, user_id: int, ctx: UserContext, proposed: dict[str, Any], now: datetime, *, stepped_up: bool
) -> CallCenterAgent:
    """Apply the agent's own changes (state, join/leave, calls to mobile); the caller commits."""
    current = await load_agent(session, user_id, ctx, now)
    # The clock's fields move by themselves (a wrap-up may have ended since the app read them): a client that
    # sends its document back must not be refused for them, so they are never taken from the input.
    proposed = {key: value for key, value in proposed.items() if key not in CLOCK_FIELDS}
    new = change(CallCenterAgent, current, proposed, ctx, stepped_up=stepped_up)
    assert isinstance(new, CallCenterAgent)
    agent = agent_state.set_by_user(_agent(current), new.state, now)
    rows = await memberships(session, user_id)
    joined = new.joined_by_id(current)
    for center, member in rows:
        member.joined = joined[center.id]
    if new.calls_to_mobile != current.calls_to_mobile:
        fixed_mobile = await service_settings.load(session, user_id, FixedMobile)
        await service_settings.save(
            session, user_id, fixed_mobile.model_copy(update={"group_calls_to_mobile": new.calls_to_mobile})
        )
    result = _document(agent, rows, joined, new.calls_to_mobile)
    await service_settings.save(session, user_id, result)
    return result


async def call_center_call_ended(
    session: AsyncSession, user_id: int, call_center_id: int, now: datetime
) -> CallCenterAgent | None:
    """Call processing: a call from this call center that the agent answered has ended — start the wrap-up.

    Returns the new document, or None when the user is not (or no longer) a member. The caller commits.
    """
    rows = await memberships(session, user_id)
    center = next((c for c, _member in rows if c.id == call_center_id), None)
    if center is None:
        return None
    stored = await _stored(session, user_id)
    agent = agent_state.call_center_call_ended(_agent(stored), center.wrap_up_seconds, now)
    joined = {c.id: member.joined for c, member in rows}
    result = _document(agent, rows, joined, stored.calls_to_mobile)
    await service_settings.save(session, user_id, result)
    return result


async def available_agents(session: AsyncSession, call_center_id: int, now: datetime) -> list[int]:
    """The members who joined this call center and are available at `now`, by user id (for the queue)."""
    rows = await session.execute(
        select(CallCenterMember.user_id, ServiceSetting.data)
        .outerjoin(
            ServiceSetting,
            (ServiceSetting.user_id == CallCenterMember.user_id) & (ServiceSetting.service == CallCenterAgent.service),
        )
        .where(CallCenterMember.call_center_id == call_center_id, CallCenterMember.joined.is_(True))
        .order_by(CallCenterMember.user_id)
    )
    available = []
    for user_id, data in rows.all():
        stored = CallCenterAgent.model_validate(data) if data is not None else CallCenterAgent()
        if agent_state.receives_call_center_calls(_agent(stored), now):
            available.append(user_id)
    return available
