"""The event hub's watcher (api/state.py `EventHub`): the backstop poll of the outbox while anyone listens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.api.state import EventHub
from hipper.store.db import create_engine, session_factory
from hipper.store.events import add_event
from tests.support.sql import statements_through_sqlalchemy


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_the_watcher_wakes_listeners_for_a_commit_it_was_not_told_of(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Another node (or the CLI) commits an outbox row: only the poll can see it. The notification dispatcher
    # listens for as long as the exchange runs, so the poll runs once a second for good: on a SQLite file it reads
    # on the call path's cheap reads, with no statement through SQLAlchemy (an ORM session each time before).
    engine = sessions.kw["bind"]
    hub = EventHub(poll_seconds=0.01)
    with statements_through_sqlalchemy(engine) as sent:
        waiter = hub.subscribe(sessions)
        try:
            assert await EventHub.wait(waiter, 10)  # the first poll wakes everyone
            waiter.clear()
            polls = [statement for statement in sent if "max(events.id)" in statement]
            async with sessions() as session:
                add_event(session, None, "company.changed", {})
                await session.commit()
            assert await EventHub.wait(waiter, 10)
        finally:
            hub.unsubscribe(waiter)
            await hub.stop()
    if engine.dialect.name == "sqlite":
        assert [statement for statement in sent if "max(events.id)" in statement] == []
    else:
        assert polls  # a pooled connection: SQLAlchemy sends it
