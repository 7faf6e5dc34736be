"""Who is on a call, shared by the nodes of one database (store/presence.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.store.db import PooledReads, create_engine, migrate, session_factory
from hipper.store.models import ActiveCall, Node
from hipper.store.presence import Presence
from hipper.store.writer import BatchWriter
from tests.calls.test_writer import make_users


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def node(sessions: async_sessionmaker[AsyncSession], node_id: str) -> Presence:
    writer = BatchWriter(sessions)
    writer.start()
    presence = Presence(sessions, writer, node_id)
    await presence.start()
    return presence


async def close(presence: Presence) -> None:
    await presence.writer.close()
    await presence.close()


async def on_call(presence: Presence, user_id: int) -> bool:
    async with presence.sessions() as session:
        return await presence.on_call(PooledReads(session), user_id, datetime.now(UTC))


async def rows(sessions: async_sessionmaker[AsyncSession], model: type[ActiveCall] | type[Node]) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_a_call_on_one_node_makes_the_user_busy_on_the_other(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bob, carol = await make_users(sessions, 2)
    a, b = await node(sessions, "node-a"), await node(sessions, "node-b")
    try:
        a.joined(bob, "call-1")
        assert a.here(bob) and await on_call(a, bob)  # this node knows at once, before anything is written
        await a.written()
        assert await on_call(b, bob) and not b.here(bob)
        assert not await on_call(b, carol)
        a.joined(bob, "call-2")  # a second call of Bob's on A (call waiting), then the first ends
        a.left(bob, "call-1")
        await a.written()
        assert await on_call(b, bob)
        a.left(bob, "call-2")
        assert not a.here(bob)
        await a.written()
        assert not await on_call(b, bob)
        assert await rows(sessions, ActiveCall) == 0
    finally:
        await close(a)
        await close(b)
    assert await rows(sessions, Node) == 0  # both left


async def test_a_dead_nodes_calls_stop_counting_when_its_lease_runs_out(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (bob,) = await make_users(sessions, 1)
    a, b = await node(sessions, "node-a"), await node(sessions, "node-b")
    try:
        a.joined(bob, "call-1")
        await a.written()
        assert await on_call(b, bob)
        # Node A stops renewing (it died, or stalled): once its lease has run out its row no longer counts...
        async with sessions() as session:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await session.execute(update(Node).where(Node.node_id == "node-a").values(lease_until=past))
            await session.commit()
        assert not await on_call(b, bob)
        # ...and the next renewal of any node deletes it.
        await b.renew()
        assert await rows(sessions, ActiveCall) == 0
        # A stalled node that comes back writes its calls again from memory.
        await a.renew()
        assert await on_call(b, bob)
    finally:
        await close(a)
        await close(b)


async def test_a_restarted_node_drops_what_its_earlier_process_left(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (bob,) = await make_users(sessions, 1)
    a, b = await node(sessions, "node-a"), await node(sessions, "node-b")
    try:
        a.joined(bob, "call-1")
        await a.written()
        await a.writer.close()  # killed: nothing more is written, the row stays
        again = await node(sessions, "node-a")  # the same node id (a setting), restarted within the lease
        assert not await on_call(b, bob)
        await close(again)
    finally:
        await a.close()
        await close(b)


async def test_a_node_started_before_its_database_is_migrated_takes_its_lease_later(tmp_path: Path) -> None:
    # `hipper serve` starts call processing before the API's start-up migrates a new database.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    sessions = session_factory(engine)
    try:
        a = Presence(sessions, BatchWriter(sessions), "node-a")
        await a.start()  # no tables yet: logged, the node runs on
        await migrate(engine)
        (bob,) = await make_users(sessions, 1)
        b = await node(sessions, "node-b")
        a.joined(bob, "call-1")
        await a.written()
        assert not await on_call(b, bob)  # node A holds no lease yet: its row does not count
        await a.renew()  # its next renewal
        assert await on_call(b, bob)
        await a.close()
        await close(b)
    finally:
        await engine.dispose()
