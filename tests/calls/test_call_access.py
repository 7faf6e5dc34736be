"""Calls via the exchange announced in the database (store/call_access.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.domain.outgoing import CallerIdentity
from hipper.store import call_access
from hipper.store.db import create_engine, session_factory
from tests.calls.test_writer import make_users

IDENTITY = CallerIdentity(
    kind="direct", number="+31201234201", anonymous=False, from_user="+31201234201", from_host=None,
    from_display="Alice", privacy=None, asserted_identity="+31201234201", reason="your direct number",
)  # fmt: skip


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def arm(sessions: async_sessionmaker[AsyncSession], user_id: int, to: str, seconds: float) -> None:
    async with sessions() as session:
        await call_access.arm(session, user_id, to, IDENTITY, datetime.now(UTC) + timedelta(seconds=seconds))
        await session.commit()


async def claim(sessions: async_sessionmaker[AsyncSession], user_id: int) -> call_access.Armed | None:
    async with sessions() as session:
        armed = await call_access.claim(session, user_id, datetime.now(UTC))
        await session.commit()
        return armed


async def test_an_announcement_is_used_once_and_a_newer_one_replaces_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    alice, bob = await make_users(sessions, 2)
    await arm(sessions, alice, "+31207654321", 30)
    await arm(sessions, alice, "+31207654322", 30)  # the app shows only the latest number to call
    assert await claim(sessions, bob) is None
    assert await claim(sessions, alice) == call_access.Armed(alice, "+31207654322", IDENTITY)
    assert await claim(sessions, alice) is None  # used up


async def test_two_claims_at_once_connect_one_call(sessions: async_sessionmaker[AsyncSession]) -> None:
    (alice,) = await make_users(sessions, 1)
    await arm(sessions, alice, "+31207654321", 30)
    claims = await asyncio.gather(claim(sessions, alice), claim(sessions, alice))
    assert sorted(armed is not None for armed in claims) == [False, True]


async def test_an_announcement_past_its_window_connects_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    (alice,) = await make_users(sessions, 1)
    await arm(sessions, alice, "+31207654321", -1)
    assert await claim(sessions, alice) is None
