"""The batch writer of call logs and call events (store/writer.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.api.state import EventHub
from hipper.domain.moments import aware
from hipper.notify import dispatcher as dispatcher_module
from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.active_calls import CallJoined, CallLeft
from hipper.store.call_logs import CallRecord
from hipper.store.db import create_engine, session_factory
from hipper.store.events import add_event
from hipper.store.models import ActiveCall, CallLog, Event
from hipper.store.writer import BatchWriter, OutboxEvent, write_items


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def make_users(sessions: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    async with sessions() as session:
        company = await admin.create_company(session, "Acme", "+31201234000")
        users = []
        for i in range(count):
            user = await admin.create_user(
                session, Hasher(1, 1024), username=f"u{i}", password="correct horse 1", company=company,
                extension=str(200 + i),
            )  # fmt: skip
            users.append(user)
        await session.commit()
        return [user.id for user in users]


def record(user_id: int, call: int, **changes: object) -> CallRecord:
    values: dict[str, object] = {
        "user_id": user_id, "kind": "received", "started_at": datetime.now(UTC), "call_id": f"call-{call}",
        "remote_number": "+31201234567", "outcome": "answered", "events": (("call.ended", {"id": f"c{call}"}),),
    }  # fmt: skip
    values.update(changes)
    return CallRecord(**values)  # type: ignore[arg-type]


async def events(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[int | None, str, dict[str, object]]]:
    async with sessions() as session:
        rows = await session.execute(select(Event.user_id, Event.type, Event.payload).order_by(Event.id))
        return [(user_id, type_, payload) for user_id, type_, payload in rows]


async def logs(sessions: async_sessionmaker[AsyncSession]) -> dict[int, CallLog]:
    async with sessions() as session:
        return {row.id: row for row in (await session.execute(select(CallLog))).scalars()}


async def test_concurrent_calls_share_transactions_and_keep_their_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    users = await make_users(sessions, 4)
    writer = BatchWriter(sessions)
    writer.start()
    before = len(await events(sessions))
    # 40 calls ending at once, each with two sides; plus a call.started event handed in among them.
    await asyncio.gather(
        *(writer.write([record(users[i % 4], i), record(users[(i + 1) % 4], i, kind="placed")]) for i in range(40)),
        writer.write([OutboxEvent(users[0], "call.started", {"id": "x"})]),
    )
    assert writer.jobs == 41
    assert writer.transactions < 10  # batched: the first call alone, then the rest together
    written = await logs(sessions)
    assert len(written) == 80
    new = (await events(sessions))[before:]
    assert len(new) == 161
    # Each side's row is announced by call_log.added with its id, followed by that side's call.ended.
    added = [(user_id, payload) for user_id, type_, payload in new if type_ == "call_log.added"]
    assert sorted(int(str(payload["id"])) for _, payload in added) == sorted(written)
    for user_id, payload in added:
        assert written[int(str(payload["id"]))].user_id == user_id
        assert written[int(str(payload["id"]))].direction == payload["kind"]
    for index, (user_id, type_, _) in enumerate(new):
        if type_ == "call_log.added":
            assert new[index + 1][:2] == (user_id, "call.ended")
    await writer.close()


async def test_a_bad_record_costs_only_its_own_call(sessions: async_sessionmaker[AsyncSession]) -> None:
    (user,) = await make_users(sessions, 1)
    writer = BatchWriter(sessions)
    writer.start()
    results = await asyncio.gather(
        writer.write([record(user, 1)]),
        writer.write([record(user, 2)]),
        writer.write([record(user, 3, kind="no-such-kind")]),  # refused by the domain's validation
        writer.write([record(user, 4)]),
        return_exceptions=True,
    )
    assert [isinstance(result, Exception) for result in results] == [False, False, True, False]
    assert sorted(row.call_id for row in (await logs(sessions)).values()) == ["call-1", "call-2", "call-4"]
    await writer.close()


async def test_close_writes_what_cancelled_calls_left_queued(sessions: async_sessionmaker[AsyncSession]) -> None:
    (user,) = await make_users(sessions, 1)
    writer = BatchWriter(sessions)
    writer.start()
    waiting = [asyncio.create_task(writer.write([record(user, i)])) for i in range(20)]
    await asyncio.sleep(0)  # all handed in, none written yet
    for task in waiting:
        task.cancel()  # the calls are cancelled at shutdown while they wait
    await asyncio.gather(*waiting, return_exceptions=True)
    await writer.close()
    assert len(await logs(sessions)) == 20
    # Closed: a late write is written at once rather than queued for a writer that is gone.
    await writer.write([record(user, 99)])
    assert len(await logs(sessions)) == 21


async def test_rows_read_back_as_the_core_statements_write_them(sessions: async_sessionmaker[AsyncSession]) -> None:
    # On SQLite the writer sends its own SQL on the connection's thread; what it stores must read back exactly
    # like the rows SQLAlchemy's Core statements store (datetimes, JSON, NULLs), which `write_items` still sends.
    (user,) = await make_users(sessions, 1)
    started = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    sides = {
        "batched": record(user, 1, started_at=started, answered_at=started, plan={"steps": [{"ring": [1, 2]}]}),
        "core": record(user, 2, started_at=started, answered_at=started, plan={"steps": [{"ring": [1, 2]}]}),
    }
    writer = BatchWriter(sessions)
    writer.start()
    await writer.write([sides["batched"], OutboxEvent(None, "call.started", {"id": "x", "n": None})])
    await writer.close()
    engine = sessions.kw["bind"]
    async with engine.begin() as connection:
        await write_items(connection, [sides["core"], OutboxEvent(None, "call.started", {"id": "x", "n": None})])
    rows = sorted((await logs(sessions)).values(), key=lambda row: row.call_id)
    columns = [c.key for c in CallLog.__table__.columns if c.key not in ("id", "call_id")]
    assert [getattr(rows[0], c) for c in columns] == [getattr(rows[1], c) for c in columns]
    assert rows[0].answered_at is not None and rows[0].answered_at.replace(tzinfo=UTC) == started
    assert rows[0].ended_at is None and rows[0].plan == {"steps": [{"ring": [1, 2]}]}
    written = await events(sessions)
    batched, core = written[-6:-3], written[-3:]
    assert [(u, t) for u, t, _ in batched] == [(u, t) for u, t, _ in core]
    assert batched[1][2] == {"id": "c1"} and core[1][2] == {"id": "c2"}  # each record's call.ended
    assert batched[2][2] == core[2][2] == {"id": "x", "n": None}


async def test_a_failed_transaction_leaves_nothing_half_written(sessions: async_sessionmaker[AsyncSession]) -> None:
    # A row the database refuses (no such user: a foreign key) fails inside the transaction, after other
    # rows of the batch went in: all of it is rolled back, then each call is written on its own.
    (user,) = await make_users(sessions, 1)
    before = len(await events(sessions))
    writer = BatchWriter(sessions)
    writer.start()
    results = await asyncio.gather(
        writer.write([record(user, 1)]),
        writer.write([record(user, 2), record(user + 1000, 2)]),  # one side of this call cannot be stored
        writer.write([record(user, 3)]),
        return_exceptions=True,
    )
    await writer.close()
    assert [isinstance(result, Exception) for result in results] == [False, True, False]
    assert sorted(row.call_id for row in (await logs(sessions)).values()) == ["call-1", "call-3"]
    new = (await events(sessions))[before:]
    assert [type_ for _, type_, _ in new] == ["call_log.added", "call.ended"] * 2


async def test_active_call_rows_read_back_as_the_core_statements_write_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Who is on a call (store/presence.py) rides in the writer's batches too, through the same two paths.
    (user,) = await make_users(sessions, 1)
    started = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    writer = BatchWriter(sessions)
    writer.start()
    await writer.write(
        [CallJoined("batched", user, "call-1", "node-a", started), CallJoined("gone", user, "c", "n", started)]
    )
    await writer.write([CallLeft("gone")])
    await writer.close()
    async with sessions.kw["bind"].begin() as connection:
        await write_items(connection, [CallJoined("core", user, "call-1", "node-a", started)])
    async with sessions() as session:
        rows = {row.id: row for row in (await session.execute(select(ActiveCall))).scalars()}
    assert sorted(rows) == ["batched", "core"]
    columns = [c.key for c in ActiveCall.__table__.columns if c.key != "id"]
    assert [getattr(rows["batched"], c) for c in columns] == [getattr(rows["core"], c) for c in columns]
    assert aware(rows["batched"].started_at) == started


async def test_submit_logged_logs_a_failed_write_on_the_callers_logger(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    (user,) = await make_users(sessions, 1)
    writer = BatchWriter(sessions)
    writer.start()
    logger = logging.getLogger("hipper.tests.caller")
    with caplog.at_level(logging.ERROR, logger="hipper.tests.caller"):
        good = writer.submit_logged([record(user, 1)], logger, "caller.write_failed", {"call": 1})
        bad = writer.submit_logged([record(user, 2, kind="no-such-kind")], logger, "caller.write_failed", {"call": 2})
        # The logging callback was added before gather's own, so it has run when gather returns.
        await asyncio.gather(good, bad, return_exceptions=True)
    assert good.exception() is None and bad.exception() is not None
    failed = [entry for entry in caplog.records if entry.name == "hipper.tests.caller"]
    assert [(entry.getMessage(), getattr(entry, "call", None)) for entry in failed] == [("caller.write_failed", 2)]
    assert failed[0].exc_info is not None
    await writer.close()


async def test_a_busy_writer_commits_at_most_once_per_window(sessions: async_sessionmaker[AsyncSession]) -> None:
    # A quiet writer writes at once; what is handed in within the window after that waits for the next commit,
    # however many moments it came at (each call hands in its event, presence rows and logs at different ones).
    (user,) = await make_users(sessions, 1)
    writer = BatchWriter(sessions, window=3600.0)
    writer.start()
    await asyncio.wait_for(writer.write([record(user, 0)]), 10)  # at once: nothing was committed before
    assert writer.transactions == 1
    later = []
    for call in range(1, 4):
        later.append(writer.submit([record(user, call)]))
        await asyncio.sleep(0.05)  # moments apart: written as they came, each would be a transaction
    assert not any(done.done() for done in later)  # all wait for the window
    await writer.close()  # ends the window: what waits is written now, in one transaction
    assert all(done.done() and done.exception() is None for done in later)
    assert writer.transactions == 2
    assert sorted(row.call_id for row in (await logs(sessions)).values()) == [f"call-{i}" for i in range(4)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_writer_keeps_one_sqlite_connection_across_batches(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (user,) = await make_users(sessions, 1)
    engine = sessions.kw["bind"]
    checkouts: list[object] = []
    event.listen(engine.sync_engine, "checkout", lambda *_: checkouts.append(1))
    writer = BatchWriter(sessions, window=0.0)
    writer.start()
    for call in range(5):
        await writer.write([record(user, call)])
    # A row the database refuses fails its batch: the next batch starts on a fresh connection.
    with pytest.raises(RuntimeError):
        await writer.write([record(user + 1000, 5)])
    await writer.write([record(user, 6)])
    await writer.close()
    assert writer.transactions == 6
    assert len(checkouts) == 2
    assert engine.sync_engine.pool.checkedout() == 0  # given back at close


# A process that writes calls through a batch writer as fast as it can and says which ones `write` returned for.
_WRITING_PROCESS = """
import asyncio, sys
from datetime import UTC, datetime
from hipper.store.call_logs import CallRecord
from hipper.store.db import create_engine, session_factory
from hipper.store.writer import BatchWriter

async def main(url, user):
    writer = BatchWriter(session_factory(create_engine(url)), window=0.05)
    writer.start()

    async def call(n):
        record = CallRecord(user, "received", datetime.now(UTC), call_id=f"call-{n}", outcome="answered",
                            events=(("call.ended", {"id": f"c{n}"}),))
        await writer.write([record])
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()

    tasks, n = set(), 0
    while True:
        task = asyncio.create_task(call(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(0.002)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_a_killed_writer_loses_at_most_its_window_and_never_half_a_call(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    # SIGKILL while calls are being written, a batch window (50 ms, ≈ 25 calls here) pending and one committing:
    # every call whose `write` returned is stored; what is lost is the newest calls only (batches commit in
    # order); and each stored call has its row and both its events, never a part of them (one transaction).
    (user,) = await make_users(sessions, 1)
    before = len(await events(sessions))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITING_PROCESS, database_url, str(user), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    acknowledged: set[int] = set()
    try:
        async with asyncio.timeout(60):
            while len(acknowledged) < 200:
                line = await process.stdout.readline()
                assert line, "the writing process ended"
                acknowledged.add(int(line))
    finally:
        process.kill()  # SIGKILL
        await process.wait()
    stored = {int(row.call_id.removeprefix("call-")): row for row in (await logs(sessions)).values()}
    assert acknowledged <= set(stored)
    assert sorted(stored) == list(range(len(stored)))  # no hole: only the newest calls can be missing
    new = (await events(sessions))[before:]
    assert len(new) == 2 * len(stored)
    added = {int(str(payload["id"])) for _, type_, payload in new if type_ == "call_log.added"}
    assert added == {row.id for row in stored.values()}
    assert sorted(str(payload["id"]) for _, type_, payload in new if type_ == "call.ended") == sorted(
        f"c{n}" for n in stored
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("failures", [2, 3])
async def test_a_busy_database_gets_the_whole_batch_again_not_each_call_alone(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    """The database is locked past its busy timeout (or a PostgreSQL link drops) while a batch of three calls is
    written: the writer writes the same batch again in a moment (two more tries), and does not split it into
    calls written alone — each would wait out the busy timeout in turn. Two failures: all three written in one
    transaction; three: all three fail (logged) after three tries. Before, it tried 1 + 3 times, one call each."""
    monkeypatch.setattr("hipper.store.writer.TRANSIENT_RETRY_SECONDS", (0.0, 0.0))
    (user,) = await make_users(sessions, 1)
    writer = BatchWriter(sessions, window=3600.0)
    writer.start()
    await writer.write([record(user, 0)])  # the window starts: the next three wait for one batch
    attempts: list[int] = []
    commit = writer._commit

    async def locked_at_first(items: Any, *, hold: bool = False) -> None:
        attempts.append(len(items))
        if len(attempts) <= failures:
            raise sqlite3.OperationalError("database is locked")
        await commit(items, hold=hold)

    monkeypatch.setattr(writer, "_commit", locked_at_first)
    calls = [writer.submit([record(user, call)]) for call in (1, 2, 3)]
    await asyncio.sleep(0)  # they join the queue at the loop's next turn
    await writer.close()
    outcomes = [call.exception() is None for call in calls]
    if failures == 2:
        assert attempts == [3, 3, 3] and outcomes == [True, True, True]
        assert sorted(row.call_id for row in (await logs(sessions)).values()) == [f"call-{i}" for i in range(4)]
    else:
        assert attempts == [3, 3, 3] and outcomes == [False, False, False]
        assert [row.call_id for row in (await logs(sessions)).values()] == ["call-0"]


async def test_close_waits_for_what_was_submitted_just_before(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Calls hand in their last rows without waiting (`submit`) as the node stops: once `close` returns they are
    written (or failed), not still on their way with the database about to close."""
    (user,) = await make_users(sessions, 1)
    writer = BatchWriter(sessions, window=3600.0)
    writer.start()
    await writer.write([record(user, 0)])
    last = [writer.submit([record(user, call)]) for call in (1, 2)]
    await writer.close()
    assert all(done.done() and done.exception() is None for done in last)
    assert sorted(row.call_id for row in (await logs(sessions)).values()) == ["call-0", "call-1", "call-2"]


async def test_a_commit_tells_its_events_and_wakes_only_the_listeners_that_want_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # The notification dispatcher acts on missed calls and voicemails only: an answered call's commit (its
    # call_log.added "received", call.started, call.ended) must not wake it — at 40 calls/s each wake-up was a
    # claim of the outbox for nothing — while the app's live-event streams (no interest) are woken by every one.
    (user_id,) = await make_users(sessions, 1)
    hub = EventHub()
    told: list[list[tuple[str, str | None]]] = []
    dispatcher = hub.subscribe(interest=dispatcher_module.wanted)
    stream = hub.subscribe()
    writer = BatchWriter(sessions, window=0.0)
    writer.committed.append(hub.published)
    writer.committed.append(lambda written: told.append([(type_, p.get("kind")) for type_, p in written]))
    writer.start()
    try:
        writer.submit([OutboxEvent(user_id, "call.started", {"id": "c1"})])
        await writer.write([record(user_id, 1)])
        assert stream.is_set() and not dispatcher.is_set()
        stream.clear()
        await writer.write([record(user_id, 2, kind="missed", outcome="missed")])
        assert stream.is_set() and dispatcher.is_set()
    finally:
        await writer.close()
        hub.unsubscribe(dispatcher)
        hub.unsubscribe(stream)
    assert Counter(entry for batch in told for entry in batch) == Counter([
        ("call.started", None), ("call_log.added", "received"), ("call.ended", None),
        ("call_log.added", "missed"), ("call.ended", None),
    ])  # fmt: skip
    hub.published()  # a commit whose events are not known (a settings change, another node): everyone looks
    assert dispatcher.is_set()


@pytest.mark.parametrize("kind", ["missed", "received", "placed", None])
@pytest.mark.parametrize("type_", ["call_log.added", "voicemail.deposited", "call.ended", "service.changed"])
async def test_what_wakes_the_dispatcher_is_what_its_claim_selects(
    sessions: async_sessionmaker[AsyncSession], type_: str, kind: str | None
) -> None:
    # `wanted` judges a reported event in Python; the claim selects with `OURS` in SQL: the two must agree, or a
    # wake-up is missed (an event the claim wants, not woken for) or wasted.
    (user_id,) = await make_users(sessions, 1)
    payload = {"id": 1} if kind is None else {"id": 1, "kind": kind}
    async with sessions() as session:
        add_event(session, user_id, type_, payload)
        await session.commit()
        selected = (await session.execute(select(Event.id).where(dispatcher_module.OURS))).all()
    assert bool(selected) == dispatcher_module.wanted(type_, payload)
