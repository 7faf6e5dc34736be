"""The outbox's retention: old events are deleted in batches, never past the notifier's cursor nor the newest
row; a live-event client resuming from a deleted id is told to reload; `hipper serve` purges on its own (the
CLI's `hipper events purge` is tested in tests/admin/test_cli.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from hipper.api.state import AppState
from hipper.server import housekeeping_once
from hipper.store import events
from hipper.store.models import Event, NotificationCursor
from tests.conftest import UserFactory
from tests.ops.test_events import auth, next_event, read_events, set_dnd

NOW = datetime.now(UTC)


async def add_events(state: AppState, user_id: int, ages_in_days: list[float]) -> list[int]:
    """Outbox rows of the given ages, in this order (ids ascending)."""
    ids = []
    async with state.sessions() as session:
        for age in ages_in_days:
            row = Event(user_id=user_id, type="test.event", payload={"age": age}, created_at=NOW - timedelta(days=age))
            session.add(row)
            await session.flush()
            ids.append(row.id)
        await session.commit()
    return ids


async def age_all(state: AppState, days: float) -> None:
    """Make every row so far (e.g. the events of creating the test's users) `days` old."""
    async with state.sessions() as session:
        await session.execute(Event.__table__.update().values(created_at=NOW - timedelta(days=days)))
        await session.commit()


async def kept(state: AppState) -> list[int]:
    async with state.sessions() as session:
        return list((await session.execute(select(Event.id).order_by(Event.id))).scalars())


async def test_old_events_go_in_batches_young_ones_and_the_newest_stay(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    await age_all(state, 30)  # the user's own events (written just now) are old too
    old = await kept(state) + await add_events(state, user.id, [30] * 7)
    young = await add_events(state, user.id, [1, 0.5])
    newest_old = await add_events(state, user.id, [40])  # old, but the newest row: kept
    async with state.sessions() as session:
        result = await events.purge(session, timedelta(days=7), batch=3)
    assert await kept(state) == young + newest_old
    assert (result.deleted, result.purged_through, result.held_back_by) == (len(old), old[-1], None)
    async with state.sessions() as session:
        assert await events.purged_through(session) == old[-1]
        again = await events.purge(session, timedelta(days=7), batch=3)
    assert (again.deleted, again.purged_through) == (0, old[-1])


async def test_a_prefix_only_and_an_id_is_never_given_out_again(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    async with state.sessions() as session:
        await session.execute(Event.__table__.delete())  # only this test's rows
        await session.commit()
    ids = await add_events(state, user.id, [20, 20, 1, 20, 20])
    async with state.sessions() as session:
        result = await events.purge(session, timedelta(days=7))
    # The young third row stops the prefix: the old ones after it wait for the next round.
    assert await kept(state) == ids[2:]
    assert (result.deleted, result.purged_through) == (2, ids[1])
    async with state.sessions() as session:
        await session.execute(Event.__table__.delete().where(Event.id == ids[2]))
        await session.commit()
        result = await events.purge(session, timedelta(days=7))
    assert await kept(state) == ids[4:] and result.purged_through == ids[3]
    # SQLite hands out max(id) + 1: with the newest row kept, a new event never reuses an id a client has seen.
    [fresh] = await add_events(state, user.id, [0])
    assert fresh > ids[-1]


async def test_never_past_the_notifiers_cursor(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    await age_all(state, 30)
    ids = await add_events(state, user.id, [30, 30, 30, 30, 0])
    async with state.sessions() as session:
        session.add(NotificationCursor(name="notifications", last_event_id=ids[1]))
        await session.commit()
        result = await events.purge(session, timedelta(days=7))
    remaining = await kept(state)
    assert remaining == ids[2:]
    assert result.held_back_by == "notifications" and result.purged_through == ids[1]
    async with state.sessions() as session:
        cursor = await session.get(NotificationCursor, "notifications")
        assert cursor is not None
        cursor.last_event_id = ids[-1]  # the notifier caught up
        await session.commit()
        result = await events.purge(session, timedelta(days=7))
    assert await kept(state) == ids[4:] and result.held_back_by is None


async def test_a_stream_resuming_from_a_purged_id_is_told_to_reload(
    app: FastAPI, http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    state: AppState = app.state.hipper
    alice = await make_user()
    await set_dnd(http, alice, True)
    async with state.sessions() as session:
        seen = int((await session.execute(select(func.max(Event.id)).where(Event.user_id == alice.id))).scalar_one())
    # Alice's phone goes away; she changes things elsewhere, and those events age past the retention.
    await set_dnd(http, alice, False)
    await age_all(state, 10)
    await add_events(state, alice.id, [0])  # something recent, so the purge may go up to the old ones
    async with state.sessions() as session:
        result = await events.purge(session, timedelta(days=7))
    assert result.purged_through > seen

    headers = {**auth(alice), "Last-Event-ID": str(seen)}
    async with http.stream("GET", "/api/v1/events", headers=headers) as response:
        stream = read_events(response)
        reset = await next_event(stream)
        assert reset.event == "events.reset"
        assert reset.data == {"reason": "expired", "resume_from": seen, "purged_through": result.purged_through}
        reset_id = int(reset.id or 0)
        assert reset_id >= result.purged_through
        # Then it follows as usual, from the newest event on (the recent test event is not replayed).
        await set_dnd(http, alice, True)
        following = await next_event(stream)
        assert following.event == "service.changed" and int(following.id or 0) > reset_id
    # Reconnecting from the reset's id is an ordinary resume: no second reset.
    headers["Last-Event-ID"] = str(reset_id)
    async with http.stream("GET", "/api/v1/events", headers=headers) as response:
        stream = read_events(response)
        replayed = await next_event(stream)
        assert replayed.event == "service.changed" and replayed.id == following.id
    # A client that was not away that long resumes exactly as before.
    headers["Last-Event-ID"] = str(result.purged_through)
    async with http.stream("GET", "/api/v1/events", headers=headers) as response:
        assert (await next_event(read_events(response))).event != "events.reset"


async def test_serve_purges_on_its_own(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    await age_all(state, 8)
    ids = await add_events(state, user.id, [8, 8, 6, 0])
    state.settings.events_retention_days = 7
    await housekeeping_once(state)
    remaining = await kept(state)
    assert remaining == ids[2:]
    state.settings.events_retention_days = 5
    await asyncio.wait_for(housekeeping_once(state), 10)
    assert await kept(state) == ids[3:]


async def test_two_nodes_purging_at_once_delete_each_row_once(app: FastAPI, make_user: UserFactory) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    await age_all(state, 30)
    old = await kept(state) + await add_events(state, user.id, [30] * 40)
    newest = await add_events(state, user.id, [0])

    async def node() -> events.PurgeResult:
        async with state.sessions() as session:
            return await events.purge(session, timedelta(days=7), batch=7)

    first, second = await asyncio.gather(node(), node())
    assert first.deleted + second.deleted == len(old)
    assert first.purged_through == second.purged_through == old[-1]
    assert await kept(state) == newest
