"""What call processing reads and writes for hunt-group and call-center calls (apps/groups.py).

Finding a group by its number or extension, the circular hunt group's rotation, the call center's members with
their stored agent state, and the queue itself: one `call_center_calls` row per queued call, shared by every node
(docs/scale-out.md "Call-center queues"). The agent's wrap-up itself is `store.call_centers.call_center_call_ended`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, case, func, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from hipper.domain.agent_state import AgentState
from hipper.domain.moments import aware
from hipper.domain.services import CallCenterAgent
from hipper.store.models import (
    CallCenter,
    CallCenterCall,
    CallCenterMember,
    CallLog,
    HuntGroup,
    HuntGroupRotation,
    Node,
    ServiceSetting,
)

log = logging.getLogger(__name__)


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


# -- the call-center queue, shared by every node -------------------------------------------------------------

QueueState = Literal["waiting", "offering", "exhausted", "connected"]
# Callers still waiting: those ringing an agent (offering) or who tried every free agent (exhausted) included.
WAITING: tuple[QueueState, ...] = ("waiting", "offering", "exhausted")
# Rows that hold their agent: no other queue call may be offered to them (the partial unique index).
HOLDING: tuple[QueueState, ...] = ("offering", "connected")
QueueOutcome = Literal["answered", "abandoned", "gave_up", "refused"]
# What a surviving node writes for the queued calls of a node that died: their media died with it.
LOST = "lost: node failed"
ENDED_WITH_NODE = "answered, node failed"


@dataclass(frozen=True)
class QueueView:
    """One queued call's place, as every live node's rows give it."""

    position: int  # 1 = next in line: callers of the call center who came earlier and still wait, plus one
    first_in_line: bool  # no earlier caller is waiting for an agent (ringing one, or exhausted, does not count)
    held: frozenset[int]  # agents offered or connected a queue call by any node


async def enter_queue(
    session: AsyncSession, call_center_id: int, node_id: str, call_id: str, caller: tuple[str, str], now: datetime
) -> int:
    """A call joins the call center's queue on `node_id`; returns its place in the order (the caller commits)."""
    row = CallCenterCall(
        call_center_id=call_center_id, node_id=node_id, call_id=call_id[:200], caller_number=caller[0][:64],
        caller_name=caller[1][:200], entered_at=now, state="waiting", outcome="",
    )  # fmt: skip
    session.add(row)
    await session.flush()
    return row.id


def _live(node_id: str, now: datetime) -> ColumnElement[bool]:
    """Rows of this node, or of a node whose lease runs: a dead node's callers wait for nobody."""
    alive = select(Node.node_id).where(Node.lease_until > now)
    return (CallCenterCall.node_id == node_id) | CallCenterCall.node_id.in_(alive)


async def queue_view(
    session: AsyncSession, entry_id: int, call_center_id: int, node_id: str, now: datetime
) -> QueueView:
    earlier = await session.execute(
        select(CallCenterCall.state).where(
            CallCenterCall.call_center_id == call_center_id,
            CallCenterCall.id < entry_id,
            CallCenterCall.state.in_(WAITING),
            _live(node_id, now),
        )
    )
    states = list(earlier.scalars())
    held = await session.execute(
        select(CallCenterCall.agent_user_id).where(CallCenterCall.state.in_(HOLDING), _live(node_id, now))
    )
    return QueueView(
        position=len(states) + 1,
        first_in_line="waiting" not in states,
        held=frozenset(user_id for user_id in held.scalars() if user_id is not None),
    )


async def claim_agent(session: AsyncSession, entry_id: int, user_id: int) -> bool:
    """Offer the agent this queued call, unless a queue call (of any node) holds them already: the partial unique
    index refuses the second claim, so two nodes claiming at once never both win. The caller commits (and a
    concurrent claim in PostgreSQL waits for this one's commit before it fails). A refused claim rolls the
    session's transaction back: claim in a transaction of its own."""
    try:
        result = await session.execute(
            update(CallCenterCall)
            .where(CallCenterCall.id == entry_id, CallCenterCall.state.in_(("waiting", "exhausted")))
            .values(state="offering", agent_user_id=user_id)
        )
    except IntegrityError:
        await session.rollback()
        return False
    return bool(getattr(result, "rowcount", 0))


async def rejoin_queue(session: AsyncSession, entry_id: int, node_id: str) -> bool:
    """The caller is still on the line here, but a surviving node wrote their row off as lost while this node's
    lease had lapsed (a stall, a database hiccup): it waits again, in its old place. False when the row did not
    end that way. The caller commits."""
    result = await session.execute(
        update(CallCenterCall)
        .where(CallCenterCall.id == entry_id, CallCenterCall.node_id == node_id, CallCenterCall.outcome == LOST)
        .values(state="waiting", outcome="", ended_at=None, agent_user_id=None)
    )
    return bool(getattr(result, "rowcount", 0))


async def queue_state(session: AsyncSession, entry_id: int, state: QueueState) -> None:
    """The queued call moves on (an offer ended: waiting or exhausted; answered: connected). Only a call still in
    the queue moves: one a surviving node wrote off (this node's lease had run out) stays ended. The caller commits."""
    holds = state in HOLDING
    values: dict[str, object] = {"state": state} if holds else {"state": state, "agent_user_id": None}
    await session.execute(
        update(CallCenterCall).where(CallCenterCall.id == entry_id, CallCenterCall.state != "ended").values(**values)
    )


async def leave_queue(session: AsyncSession, entry_id: int, outcome: QueueOutcome, now: datetime) -> None:
    """The call left the queue (or its answered call ended) with `outcome`; the row stays as statistics."""
    await session.execute(
        update(CallCenterCall)
        .where(CallCenterCall.id == entry_id, CallCenterCall.state != "ended")
        .values(state="ended", outcome=outcome, ended_at=now)
    )


async def lose_queued_calls(session: AsyncSession, nodes: Select[str] | list[str], now: datetime) -> int:
    """The nodes died (or an earlier process of a restarted node did): their queued calls are written off, once.

    A conditional UPDATE: of two nodes doing this at once, the second finds the rows ended already (PostgreSQL
    re-checks the condition after waiting for the first's commit), so each call gets its outcome and its log
    line once. The caller commits. Returns how many were written off."""
    rows = await session.execute(
        update(CallCenterCall)
        .where(CallCenterCall.node_id.in_(nodes), CallCenterCall.state != "ended")
        .values(
            state="ended",
            ended_at=now,
            outcome=case((CallCenterCall.state == "connected", ENDED_WITH_NODE), else_=LOST),
        )
        .returning(
            CallCenterCall.id,
            CallCenterCall.call_center_id,
            CallCenterCall.node_id,
            CallCenterCall.call_id,
            CallCenterCall.caller_number,
            CallCenterCall.outcome,
        )
    )
    lost = rows.all()
    for entry_id, call_center_id, node_id, call_id, caller, outcome in lost:
        log.warning(
            "call_center.caller_lost",
            extra={"entry_id": entry_id, "call_center_id": call_center_id, "node_id": node_id, "call_id": call_id,
                   "caller": caller, "outcome": outcome},
        )  # fmt: skip
    return len(lost)
