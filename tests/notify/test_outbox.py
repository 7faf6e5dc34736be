"""Following the outbox: what the dispatcher reads, when, and that it still misses nothing and sends nothing twice.

The reads are counted with a SQLAlchemy `do_orm_execute` listener on the real database (both backends), not
timed: the statements the dispatcher runs and the payload values it gets back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy import Select, event, func, select
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from hipper.api.state import AppState
from hipper.notify import Notifications
from hipper.notify import dispatcher as dispatcher_module
from hipper.store import call_logs
from hipper.store.events import add_event
from hipper.store.models import Event, NotificationCursor
from tests.conftest import UserFactory
from tests.notify.conftest import PushService
from tests.notify.test_email import drain
from tests.notify.test_push import STARTED, missed_call, subscribe

PAYLOAD = Event.__table__.c.payload
CURSORS = NotificationCursor.__table__


@dataclass
class Reads:
    """What was read through any session while counting."""

    claims: int = 0  # each claim starts by reading the cursor
    payloads: int = 0  # event payloads handed back to Python (each one JSON-decoded)


@pytest.fixture
def reads() -> Iterator[Reads]:
    counted = Reads()

    def count(execution: ORMExecuteState) -> Result[object] | None:
        statement = execution.statement
        if not isinstance(statement, Select):
            return None
        if any(table is CURSORS for table in statement.get_final_froms()):
            counted.claims += 1
        if not any(column.compare(PAYLOAD) for column in statement.selected_columns):
            return None
        # Run it here to count the rows, and hand the same rows on (SQLAlchemy's documented re-execution hook).
        frozen = execution.invoke_statement().freeze()
        counted.payloads += len(frozen().all())
        return frozen()

    event.listen(Session, "do_orm_execute", count)
    try:
        yield counted
    finally:
        event.remove(Session, "do_orm_execute", count)


async def other_event(state: AppState, user_id: int, n: int) -> None:
    """A settings change as the API writes it: its event in its own transaction, then the hub is woken."""
    async with state.sessions() as session:
        add_event(session, user_id, "service.changed", {"service": "do-not-disturb", "n": n})
        await session.commit()
    state.events.published()


async def cursor_position(state: AppState) -> tuple[int, int]:
    async with state.sessions() as session:
        cursor = await session.get(NotificationCursor, "notifications")
        newest = (await session.execute(select(func.max(Event.id)))).scalar_one()
    assert cursor is not None
    return cursor.last_event_id, newest


async def test_a_burst_of_other_events_is_neither_decoded_nor_reread_per_commit(
    app: FastAPI, make_user: UserFactory, push_service: PushService, reads: Reads
) -> None:
    """The settings-PUT profile: every commit wakes the dispatcher while the last second is still unsettled.

    Before, each wake-up re-read (and decoded) every event of that second: hundreds of claims and thousands of
    payloads here. Now commits during a pending settle wait for it, and only our own events' payloads are read.
    """
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    dispatcher = Notifications(state.settings, state.sessions, hub=state.events, settle_seconds=0.5)
    await dispatcher.ensure_cursor()
    dispatcher.start()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        reads.claims = reads.payloads = 0
        first = await missed_call(state, user.id, number="+31611111111")
        commits = 1
        for n in range(150):
            await other_event(state, user.id, n)
            commits += 1
            if n % 10 == 0:  # answered calls are call_log.added too, but not ours: their kind is filtered in SQL
                await missed_call(state, user.id, kind="received")
                commits += 1
        last = await missed_call(state, user.id, number="+31622222222")
        commits += 1
        burst_seconds = loop.time() - began
        claims_in_burst = reads.claims

        async with asyncio.timeout(10):
            while len(push_service.delivered) < 2:
                push_service.arrived.clear()
                await push_service.arrived.wait()
        payloads = reads.payloads
    finally:
        await dispatcher.close()

    assert sorted(d.message["call_log_id"] for d in push_service.delivered) == sorted([first.id, last.id])
    # Only the two missed calls' payloads ever reached Python: none of the 165 other events', and no rereads.
    assert payloads == 2
    # One read when the burst starts, then at most one per batch interval while events are pending — not one
    # per commit (the bound is counted from the burst's own duration, so a slow machine does not fail it).
    assert claims_in_burst <= burst_seconds / dispatcher.batch_seconds + 3, (claims_in_burst, commits)
    assert claims_in_burst < commits
    # And the cursor passed all of them, so the next read starts after the burst.
    position, newest = await cursor_position(state)
    assert position == newest


async def test_other_events_move_the_cursor_without_reading_payloads(
    app: FastAPI, make_user: UserFactory, reads: Reads
) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    dispatcher = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    await drain(dispatcher)
    for n in range(40):
        await other_event(state, user.id, n)
    reads.claims = reads.payloads = 0
    await drain(dispatcher)
    assert reads.payloads == 0
    position, newest = await cursor_position(state)
    assert position == newest
    # Passed for good: the next claim finds nothing to read.
    assert await dispatcher.claim() == ([], None)
    await dispatcher.close()


async def test_an_event_committed_out_of_id_order_within_the_settle_window_is_notified(
    app: FastAPI, make_user: UserFactory, push_service: PushService, database_url: str
) -> None:
    """A missed call gets its event id first but commits after a later event: the cursor waits for it."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time, so its event ids always become visible in order")
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    dispatcher = Notifications(state.settings, state.sessions, settle_seconds=0.5)
    await drain(dispatcher)
    async with state.sessions() as slow:
        row = await call_logs.record_call(
            slow,
            user.id,
            kind="missed",
            started_at=STARTED,
            answered_at=None,
            ended_at=STARTED,
            remote_number="+31633333333",
            remote_name="",
        )
        await slow.flush()  # the event row and its id exist now, invisible to others until the commit
        await other_event(state, user.id, 1)  # a higher id, committed first
        events, again = await dispatcher.claim()
        assert events == [] and again is not None and 0.0 < again <= 0.5
        await slow.commit()
    await asyncio.sleep(again + 0.1)  # the event loop's clock and the wall clock may differ a little
    await drain(dispatcher)
    await dispatcher.close()
    assert [d.message["call_log_id"] for d in push_service.delivered] == [row.id]


async def test_a_restart_resumes_from_the_cursor(
    app: FastAPI, make_user: UserFactory, push_service: PushService
) -> None:
    """What was sent before the restart is not sent again; what came while nobody ran is sent after it."""
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    before = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    await drain(before)
    sent = await missed_call(state, user.id, number="+31644444444")
    await drain(before)
    await before.close()
    while_down = await missed_call(state, user.id, number="+31655555555")
    after = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    await drain(after)
    await after.close()
    assert [d.message["call_log_id"] for d in push_service.delivered] == [sent.id, while_down.id]


async def test_two_settling_dispatchers_never_notify_twice(
    app: FastAPI, make_user: UserFactory, push_service: PushService
) -> None:
    """Two running nodes with a real settle time, both woken by every commit: each call is pushed once."""
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    nodes = [
        Notifications(state.settings, state.sessions, hub=state.events, settle_seconds=0.3, batch_seconds=0.05)
        for _ in range(2)
    ]
    await nodes[0].ensure_cursor()
    for node in nodes:
        node.start()
    try:
        rows = []
        for n in range(10):
            rows.append(await missed_call(state, user.id, number=f"+3161234{6000 + n}"))
            await other_event(state, user.id, n)
        async with asyncio.timeout(10):
            while len(push_service.delivered) < len(rows):
                push_service.arrived.clear()
                await push_service.arrived.wait()
        await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
    finally:
        for node in nodes:
            await node.close()
    tags = sorted(d.message["tag"] for d in push_service.delivered)
    assert tags == sorted(f"missed-call-{row.id}" for row in rows)


async def test_a_burst_of_missed_calls_holds_few_database_sessions_at_once(
    app: FastAPI, make_user: UserFactory, push_service: PushService
) -> None:
    """Hundreds of pending notifications must not take the connection pool the call path reads from: on
    PostgreSQL a burst of missed calls made calls fail with `QueuePool limit`, which made more missed calls
    (bench/sip, docs/performance.md). Their reads wait for one of `concurrency` slots instead."""
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    open_now = 0
    most = 0

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[AsyncSession]:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            async with state.sessions() as session:
                yield session
        finally:
            open_now -= 1

    dispatcher = Notifications(state.settings, counted, concurrency=2, settle_seconds=0.0)  # type: ignore[arg-type]
    await dispatcher.ensure_cursor()
    for _ in range(40):
        await missed_call(state, user.id)
    await drain(dispatcher)
    await dispatcher.close()
    assert len(push_service.delivered) == 40  # every one still sent
    # Two reading, two pushing (each reads the subscriptions), nothing else open: not one per pending job.
    assert most <= 4, most


async def test_a_claim_sends_statements_built_once(app: FastAPI, make_user: UserFactory) -> None:
    # Composing the claim's five statements per claim (and generating their cache keys) was most of its CPU, four
    # claims a second under a steady stream of calls: each one is built once, with bound parameters.
    state: AppState = app.state.hipper
    user = await make_user()
    dispatcher = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    await drain(dispatcher)
    built_once = {
        id(statement)
        for statement in (dispatcher_module._CURSOR, dispatcher_module._UNSETTLED, dispatcher_module._SETTLED,
                          dispatcher_module._SETTLED_BELOW, dispatcher_module._OURS_UP_TO, dispatcher_module._MOVE)
    }  # fmt: skip
    sent: list[object] = []

    def record(execution: ORMExecuteState) -> None:
        sent.append(execution.statement)

    for n in range(3):
        await other_event(state, user.id, n)
    first = await missed_call(state, user.id, number="+31611111111")
    event.listen(Session, "do_orm_execute", record)
    try:
        events, _ = await dispatcher.claim()
    finally:
        event.remove(Session, "do_orm_execute", record)
    assert [claimed.payload["id"] for claimed in events] == [first.id]
    assert len(sent) == 5 and {id(statement) for statement in sent} <= built_once, sent
    position, newest = await cursor_position(state)
    assert position == newest
    await dispatcher.close()
