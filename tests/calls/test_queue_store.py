"""The shared call-center queue in the store (store/group_calls.py), on SQLite (the embedded single node) and on
PostgreSQL: one queue call per agent whatever the call center, positions and "first in line" over live nodes
only, and a dead node's queued calls written off once by the lease housekeeping (store/active_calls.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.store import active_calls, admin, group_calls
from hipper.store.db import create_engine, session_factory
from hipper.store.models import CallCenterCall

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
AGENT = 7  # a user id: the queue rows name agents without a foreign key (statistics outlive users)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def centers(sessions: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    async with sessions() as session:
        company = await admin.create_company(session, "Acme", "+31201234000")
        made = [await admin.create_call_center(session, company, f"Desk {n}", extension=f"60{n}") for n in range(count)]
        await session.commit()
        return [center.id for center in made]


async def enter(sessions: async_sessionmaker[AsyncSession], center: int, node: str, at: datetime = NOW) -> int:
    async with sessions() as session:
        entry = await group_calls.enter_queue(session, center, node, f"call-{node}-{at.timestamp()}", ("", ""), at)
        await session.commit()
        return entry


async def lease(sessions: async_sessionmaker[AsyncSession], node: str, until: datetime) -> None:
    async with sessions() as session:
        await active_calls.renew_lease(session, node, NOW, until)
        await session.commit()


async def test_an_agent_is_held_by_one_queue_call_of_any_call_center_until_it_lets_them_go(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, second = await centers(sessions, 2)
    one = await enter(sessions, first, "node-a")
    other = await enter(sessions, second, "node-b")
    async with sessions() as session:
        assert await group_calls.claim_agent(session, one, AGENT)
        await session.commit()
    async with sessions() as session:
        assert not await group_calls.claim_agent(session, other, AGENT)  # the other call center's call
        await session.commit()
    async with sessions() as session:
        await group_calls.queue_state(session, one, "connected")  # answered: still held
        await session.commit()
    async with sessions() as session:
        assert not await group_calls.claim_agent(session, other, AGENT)
    async with sessions() as session:
        await group_calls.leave_queue(session, one, "answered", NOW)  # the wrap-up is stored: let go
        assert await group_calls.claim_agent(session, other, AGENT)
        await session.commit()
    async with sessions() as session:
        rows = (await session.execute(select(CallCenterCall).order_by(CallCenterCall.id))).scalars().all()
        assert [(r.state, r.outcome, r.agent_user_id) for r in rows] == [
            ("ended", "answered", AGENT),  # the statistics keep who answered
            ("offering", "", AGENT),
        ]


async def test_positions_count_the_callers_of_live_nodes_only(sessions: async_sessionmaker[AsyncSession]) -> None:
    [center] = await centers(sessions, 1)
    now = datetime.now(UTC)
    await lease(sessions, "node-b", now + timedelta(seconds=30))
    await lease(sessions, "node-dead", now - timedelta(seconds=1))
    dead = await enter(sessions, center, "node-dead")
    ringing = await enter(sessions, center, "node-b")
    mine = await enter(sessions, center, "node-a")  # this node: counts without a lease row of its own
    async with sessions() as session:
        assert await group_calls.claim_agent(session, ringing, AGENT)
        view = await group_calls.queue_view(session, mine, center, "node-a", now)
        # Node B's caller rings an agent (still waiting, so counted; not in the way); the dead node's is gone.
        assert (view.position, view.first_in_line, view.held) == (2, True, frozenset({AGENT}))
        await group_calls.queue_state(session, ringing, "waiting")
        view = await group_calls.queue_view(session, mine, center, "node-a", now)
        assert (view.position, view.first_in_line, view.held) == (2, False, frozenset())
        assert (await group_calls.queue_view(session, dead, center, "node-a", now)).position == 1
        await session.commit()


async def test_a_dead_nodes_queued_calls_are_written_off_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    [center] = await centers(sessions, 1)
    await lease(sessions, "node-dead", NOW - timedelta(seconds=1))
    waiting = await enter(sessions, center, "node-dead")
    talking = await enter(sessions, center, "node-dead")
    finished = await enter(sessions, center, "node-dead")
    async with sessions() as session:
        assert await group_calls.claim_agent(session, talking, AGENT)
        await group_calls.queue_state(session, talking, "connected")
        await group_calls.leave_queue(session, finished, "abandoned", NOW - timedelta(seconds=5))
        await session.commit()
    async with sessions() as session:
        await active_calls.purge_expired(session, NOW)
        await session.commit()
    async with sessions() as session:
        assert await group_calls.lose_queued_calls(session, ["node-dead"], NOW) == 0  # nothing twice
        rows = {r.id: r for r in (await session.execute(select(CallCenterCall))).scalars()}
    assert (rows[waiting].state, rows[waiting].outcome) == ("ended", group_calls.LOST)
    assert (rows[talking].state, rows[talking].outcome) == ("ended", group_calls.ENDED_WITH_NODE)
    assert rows[finished].outcome == "abandoned"  # what its node wrote stays
