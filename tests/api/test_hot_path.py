"""The settings hot path (GET/PUT /me/services/{service}): correct under concurrency, and lean in SQL.

The benchmark (bench/api, docs/performance.md) drives these two routes; these tests pin what its changes must
keep: no 5xx when one user's PUTs race, the stored document and the last event agree, and the number of SQL
statements a request costs does not creep back up.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiosqlite
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import event, select

from hipper.api.deps import autocommit_of, reads_of, writer_of
from hipper.api.routers import calls, events, services
from hipper.domain.services import DoNotDisturb
from hipper.store.models import Event, ServiceSetting
from hipper.store.service_settings import LoopWriter, save_and_commit
from tests.conftest import LoggedIn, UserFactory


@contextmanager
def counting_statements(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends while the block runs (pool resets included)."""
    statements: list[str] = []
    engine = app.state.hipper.engine.sync_engine

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_concurrent_puts_of_one_service_never_fail(make_user: UserFactory, app: FastAPI) -> None:
    # The first PUTs race to create the row: a read-then-insert answered 500 (unique key) for the losers.
    user = await make_user(["full"])
    bodies = [{"active": n % 2 == 0} for n in range(24)]
    responses = await asyncio.gather(*(user.put("/me/services/do-not-disturb", json=body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses if r.is_error]

    final = (await user.get("/me/services/do-not-disturb")).json()
    assert final["active"] in {True, False}
    async with app.state.hipper.sessions() as session:
        rows = (await session.execute(select(ServiceSetting).where(ServiceSetting.user_id == user.id))).scalars()
        stored = [row for row in rows if row.service == "do-not-disturb"]
        events = (
            (
                await session.execute(
                    select(Event).where(Event.user_id == user.id, Event.type == "service.changed").order_by(Event.id)
                )
            )
            .scalars()
            .all()
        )
    assert len(stored) == 1
    assert stored[0].data == final
    # One event per accepted change, and the last one published tells listeners the state that was kept.
    changes = [e for e in events if e.payload["service"] == "do-not-disturb"]
    assert len(changes) == len(bodies)
    assert changes[-1].payload["settings"] == final


async def test_concurrent_puts_of_different_services(make_user: UserFactory) -> None:
    user = await make_user(["full"])
    puts = [
        user.put("/me/services/do-not-disturb", json={"active": True}),
        user.put("/me/services/call-waiting", json={"active": False}),
        user.put("/me/services/anonymous", json={"desk": True}),
    ] * 4
    responses = await asyncio.gather(*puts)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.is_error]
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is True
    assert (await user.get("/me/services/call-waiting")).json()["active"] is False
    assert (await user.get("/me/services/anonymous")).json()["desk"] is True


@asynccontextmanager
async def sqlite_statements(app: FastAPI) -> AsyncIterator[list[tuple[str, int]]]:
    """Every statement SQLite itself runs while the block runs — on the app's pooled connections and on the
    settings routes' own read connection (`deps.reads_of`) — with the thread that ran it: also those sent past
    SQLAlchemy, which its events miss."""
    statements: list[tuple[str, int]] = []
    engine = app.state.hipper.engine
    reads = reads_of(app.state.hipper)._sqlite
    assert reads is not None
    writer = writer_of(app.state.hipper)
    assert writer is not None

    def trace(statement: str) -> None:
        statements.append((statement.split(None, 1)[0].upper(), threading.get_ident()))

    def traced(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection._conn.set_trace_callback(trace)

    await engine.dispose()  # the pool opens fresh connections, each traced from its first statement
    event.listen(engine.sync_engine, "connect", traced)
    reads.set_trace_callback(trace)
    writer.connection.set_trace_callback(trace)
    try:
        yield statements
    finally:
        reads.set_trace_callback(None)
        writer.connection.set_trace_callback(None)
        event.remove(engine.sync_engine, "connect", traced)
        await engine.dispose()


async def test_statements_per_settings_request(
    make_user: UserFactory, app: FastAPI, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GET: one statement, the session lookup (session, user, company, department, call-center number) with the
    # stored document joined in. PUT: the same lookup, then the change and its event in one round trip (issue 9):
    # on PostgreSQL one statement (no BEGIN/COMMIT: `test_settings_requests_open_no_transaction_on_postgresql`),
    # on SQLite BEGIN IMMEDIATE, upsert, event, COMMIT on the loop, on the settings writer's own connection, with
    # no hand-off to a worker thread (`test_a_locked_database_sends_the_write_to_the_worker_thread` covers the
    # other way). The documents of related services (voicemail's rules look at call waiting) in one more statement.
    user = await make_user(["full"])
    await user.get("/me/services/do-not-disturb")  # warm: the first request may compile and connect
    if database_url.startswith("sqlite"):
        async with sqlite_statements(app) as ran:
            response = await user.get("/me/services/do-not-disturb")
        assert response.status_code == 200
        assert ran == [("SELECT", threading.get_ident())]  # on the loop, on the read connection
        # Each call aiosqlite hands to the connection's worker thread (observed, then passed on unchanged).
        handed_off: list[str] = []
        hand_off = aiosqlite.Connection._execute

        async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
            handed_off.append(getattr(fn, "__name__", repr(fn)))
            return await hand_off(self, fn, *args, **kwargs)

        async with sqlite_statements(app) as ran:
            await user.put("/me/services/do-not-disturb", json={})  # the pool's fresh connection, opened and set up
            ran.clear()
            monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
            response = await user.put("/me/services/do-not-disturb", json={"active": True})
            monkeypatch.undo()
        assert response.status_code == 200
        assert [kind for kind, _thread in ran] == ["SELECT", "BEGIN", "INSERT", "INSERT", "COMMIT"], ran
        loop_thread = threading.get_ident()
        assert all(thread == loop_thread for _kind, thread in ran)  # the lookup and the write, on the loop
        assert handed_off == []  # no hand-off to a worker thread
    else:
        with counting_statements(app) as statements:
            response = await user.get("/me/services/do-not-disturb")
        assert response.status_code == 200
        assert statements == ["SELECT"]
        with counting_statements(app) as statements:
            response = await user.put("/me/services/do-not-disturb", json={"active": True})
        assert response.status_code == 200
        assert statements == ["SELECT", "WITH"]  # the lookup; the upsert feeding the event's INSERT … SELECT
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is True
    # Voicemail's rules look at call waiting: its document is read in one more statement (SQLAlchemy's events
    # see the lookup too on PostgreSQL; on SQLite it runs on the read connection).
    with counting_statements(app) as statements:
        response = await user.put("/me/services/voicemail", json={})
    assert response.status_code == 200, response.text
    assert statements.count("SELECT") == (1 if database_url.startswith("sqlite") else 2)


async def test_the_document_read_with_the_session_is_the_users_own(make_user: UserFactory) -> None:
    # The GET joins the stored document into the session lookup: it must be the caller's, per service, and the
    # defaults when the caller has none stored, whatever other users stored.
    alice, bob = await make_user(["full"]), await make_user(["full"])
    assert (await alice.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await alice.put("/me/services/call-waiting", json={"active": False})).status_code == 200
    assert (await bob.get("/me/services/do-not-disturb")).json()["active"] is False
    assert (await bob.get("/me/services/call-waiting")).json()["active"] is True
    assert (await alice.get("/me/services/do-not-disturb")).json()["active"] is True
    assert (await alice.get("/me/services/call-waiting")).json()["active"] is False
    assert (await bob.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    assert (await alice.put("/me/services/do-not-disturb", json={"active": False})).status_code == 200
    assert (await bob.get("/me/services/do-not-disturb")).json()["active"] is True
    # An ended session reads nothing, document or not.
    assert (await alice.client.post("/api/v1/auth/logout", headers=alice.headers)).status_code == 204
    assert (await alice.get("/me/services/do-not-disturb")).status_code == 401


async def test_numbers_come_with_the_session(make_user: UserFactory, app: FastAPI) -> None:
    # The call-center number is read in the session lookup's statement; it must still reach the numbers.
    from hipper.store.models import CallCenter, CallCenterMember, User

    user = await make_user(["full"])
    async with app.state.hipper.sessions() as session:
        company_id = (await session.get(User, user.id)).company_id
        center = CallCenter(company_id=company_id, name="Support", number="+31201234999")
        session.add(center)
        await session.flush()
        session.add(CallCenterMember(call_center_id=center.id, user_id=user.id))
        await session.commit()
    profile = (await user.client.get("/api/v1/me", headers=user.headers)).json()
    assert profile["numbers"]["call_center"] == "+31201234999"
    assert profile["numbers"]["company"] == "+31201234000"


@contextlib.contextmanager
def hipper_handler_alone() -> Iterator[None]:
    """The root logger with our handler only (as under `hipper serve`): pytest's own capture handlers otherwise sit
    beside it, and `hot_line` gives way to any other handler."""
    import logging

    from hipper import logs

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [handler for handler in saved if handler is logs._hot_handler]
    try:
        yield
    finally:
        root.handlers = saved


def test_the_fast_request_line_reads_like_any_other_line() -> None:
    # hot_line skips the standard library's record machinery; what it writes must not differ from log.info.
    import io
    import json
    import logging

    import structlog

    from hipper import logs

    fields: dict[str, Any] = {"request_id": "r1", "user_id": 7, "method": "GET", "status": 200, "token": "s3cret"}
    for as_json in (True, False):
        stream = io.StringIO()
        logs.configure("INFO", json=as_json, stream=stream)
        try:
            with hipper_handler_alone():
                structlog.get_logger("hipper.http").info("request", **fields)
                assert logs.hot_line(logging.getLogger("hipper.http"), "request", **fields)
            logs.configure("WARNING", json=as_json, stream=stream)
            with hipper_handler_alone():
                assert logs.hot_line(logging.getLogger("hipper.http"), "request", **fields)  # below the level
        finally:
            logs.configure("WARNING", json=True)
        ordinary, fast = stream.getvalue().splitlines()
        assert "s3cret" not in fast
        if as_json:
            ordinary_fields, fast_fields = json.loads(ordinary), json.loads(fast)
            assert ordinary_fields.pop("timestamp") and fast_fields.pop("timestamp")
            assert list(fast_fields.items()) == list(ordinary_fields.items())
        else:
            assert ordinary.split(" ", 1)[1] == fast.split(" ", 1)[1]  # all but the timestamp


def test_the_fast_line_gives_way_to_any_other_handler(caplog: pytest.LogCaptureFixture) -> None:
    # hot_line writes to our handler only: with another handler on the record's way (a test's capture, an error
    # tracker) it answers False and the caller logs the ordinary way, so that handler sees the line too. Before,
    # a call's `call.ended` went past the capture whenever an earlier test in the process had configured logging.
    import io
    import logging

    from hipper import logs

    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    try:
        logger = logging.getLogger("hipper.engine.call")
        with hipper_handler_alone():
            assert logs.hot_line(logger, "call.ended", call_id="c1")  # ours alone: the fast way
            extra = logging.StreamHandler(io.StringIO())
            logging.getLogger("hipper").addHandler(extra)  # a handler on the way up
            try:
                assert not logs.hot_line(logger, "call.ended", call_id="c3")
            finally:
                logging.getLogger("hipper").removeHandler(extra)
        with caplog.at_level("INFO", logger="hipper"):  # pytest's capture beside ours on the root logger
            assert not logs.hot_line(logger, "call.ended", call_id="c2")
    finally:
        logs.configure("WARNING", json=True)
    assert '"c1"' in stream.getvalue() and '"c2"' not in stream.getvalue()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_settings_requests_open_no_transaction_on_postgresql(
    make_user: UserFactory, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GET is one SELECT: asyncpg's BEGIN and ROLLBACK around it would be two more round trips. The PUT's
    # change and its outbox event are one statement (atomic by itself), so it needs no BEGIN/COMMIT either; other
    # writes still begin a transaction on the same pooled connections.
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    begun: list[object] = []
    original = AsyncAdapt_asyncpg_connection._start_transaction

    async def counting_start(self: AsyncAdapt_asyncpg_connection) -> None:
        await original(self)
        if self._transaction is not None:  # BEGIN was sent (in autocommit the adapter sends nothing)
            begun.append(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "_start_transaction", counting_start)
    user = await make_user(["full"])
    assert (await user.put("/me/services/do-not-disturb", json={"active": True})).status_code == 200
    begun.clear()
    with counting_statements(app) as statements:
        response = await user.get("/me/services/do-not-disturb")
    assert response.json()["active"] is True
    assert statements == ["SELECT"]
    assert begun == []
    with counting_statements(app) as statements:
        response = await user.put("/me/services/do-not-disturb", json={"active": False})
    assert response.status_code == 200
    assert statements == ["SELECT", "WITH"]
    assert begun == []
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is False
    # And the pooled connections are back to transactions for the other routes.
    assert (await user.client.get("/api/v1/me", headers=user.headers)).status_code == 200
    assert begun


def _plain_dependencies(dependant: Any) -> list[str]:
    """The dependencies in `dependant`'s tree that are plain functions (FastAPI runs those in its thread pool)."""
    found = []
    for sub in dependant.dependencies:
        call = sub.call
        method = call if inspect.isfunction(call) or inspect.ismethod(call) else type(call).__call__
        if not (inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)):
            found.append(getattr(call, "__qualname__", repr(call)))
        found += _plain_dependencies(sub)
    return found


def test_settings_event_and_call_routes_have_no_thread_pool_dependencies() -> None:
    # A plain-function dependency costs a hand-off to a worker thread and back per request (≈ 8 % of a settings
    # PUT, docs/performance.md): `State` was one, and the live-call routes' own three.
    every = [*services.router.routes, *events.router.routes, *calls.router.routes]
    routes = [route for route in every if isinstance(route, APIRoute)]
    assert len(routes) > 30
    plain = {f"{route.methods} {route.path}": _plain_dependencies(route.dependant) for route in routes}
    assert {route: found for route, found in plain.items() if found} == {}


async def _user_and_loop_writer(make_user: UserFactory, app: FastAPI, database_url: str) -> tuple[LoggedIn, LoopWriter]:
    """A user whose first PUT opened the app's settings `LoopWriter` (SQLite only: skips elsewhere)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock and WAL")
    user = await make_user(["full"])
    assert (await user.put("/me/services/do-not-disturb", json={"active": False})).status_code == 200
    writer = writer_of(app.state.hipper)
    assert writer is not None
    return user, writer


async def test_a_locked_database_sends_the_write_to_the_worker_thread(
    make_user: UserFactory, app: FastAPI, database_url: str
) -> None:
    # The settings writer commits on the loop only when it gets SQLite's write lock at once; while another
    # connection holds it, the PUT waits for it on the worker thread (busy timeout), never on the loop.
    user, writer = await _user_and_loop_writer(make_user, app, database_url)
    database = app.state.hipper.engine.url.database
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
        put = asyncio.ensure_future(user.put("/me/services/do-not-disturb", json={"active": True}))
        ticks = 0
        while writer.busy == 0:  # the loop keeps turning while the PUT waits
            await asyncio.sleep(0)
            ticks += 1
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        assert not put.done()  # still waiting for the lock, on the worker thread
        holder.execute("COMMIT")
        response = await put
    finally:
        holder.close()
    assert response.status_code == 200, response.text
    assert writer.busy == 1
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is True
    async with app.state.hipper.sessions() as session:
        last = (
            (
                await session.execute(
                    select(Event).where(Event.user_id == user.id, Event.type == "service.changed").order_by(Event.id)
                )
            )
            .scalars()
            .all()[-1]
        )
    assert last.payload["settings"]["active"] is True  # its event, written with it


def _wal_generation(database: str) -> tuple[int, int]:
    """The WAL header's checkpoint sequence number and first salt (sqlite.org/fileformat2.html §4.1, big-endian):
    both change exactly when a writer starts the WAL over, which syncs the new header to disk."""
    with open(f"{database}-wal", "rb") as wal:
        header = wal.read(32)
    return int.from_bytes(header[12:16], "big"), int.from_bytes(header[16:20], "big")


def _wal_bytes(database: str) -> int:
    return os.path.getsize(f"{database}-wal")


async def test_the_loop_writer_neither_checkpoints_nor_starts_the_wal_over(
    make_user: UserFactory, app: FastAPI, database_url: str
) -> None:
    # Both sync the disk: a checkpoint (both files), and the first commit after a complete one (the WAL's new
    # header, whatever `synchronous` says) — that one took 11–39 ms on the loop under load. The loop writer leaves
    # the first to a thread and the second to the worker thread's path; durability stays `synchronous=NORMAL`.
    user, writer = await _user_and_loop_writer(make_user, app, database_url)
    state = app.state.hipper
    writer.CHECKPOINT_EVERY = 10**9  # no checkpoint of its own on the thread either, for the first part
    engine = autocommit_of(state)
    database = engine.url.database
    restarted_on_loop = 0
    try_write = writer.try_write

    def watched(upsert: tuple[Any, ...], insert: tuple[Any, ...]) -> bool:
        nonlocal restarted_on_loop
        before = _wal_generation(database)
        wrote = try_write(upsert, insert)
        restarted_on_loop += wrote and _wal_generation(database) != before
        return wrote

    writer.try_write = watched  # type: ignore[method-assign]
    with contextlib.closing(sqlite3.connect(database)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # the database's, for every connection
    assert writer.connection.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL, as the pool's
    async with engine.connect() as pooled:
        assert (await pooled.exec_driver_sql("PRAGMA synchronous")).scalar() == 1

    # Past SQLite's default checkpoint threshold (1000 pages): a writer that checkpointed would start the WAL
    # over instead of growing it.
    page = writer.connection.execute("PRAGMA page_size").fetchone()[0]
    generation, handed = _wal_generation(database), (writer.busy, writer.wal_restarts)
    written = 0
    while _wal_bytes(database) < 1100 * (page + 24):
        await save_and_commit(engine, user.id, DoNotDisturb(active=written % 2 == 0), writer)
        written += 1
    assert _wal_generation(database) == generation and (writer.busy, writer.wal_restarts) == handed

    # The writer's own checkpoint (on its thread) copies the whole WAL: the next commit starts the WAL over — on
    # the worker thread, once — and the loop writes again after it.
    await asyncio.to_thread(writer._checkpoint)  # what its thread runs every CHECKPOINT_EVERY commits
    assert writer._restart_due
    for active in (True, False, True):
        await save_and_commit(engine, user.id, DoNotDisturb(active=active), writer)
    assert _wal_generation(database) != generation
    assert (writer.busy, writer.wal_restarts) == (handed[0], handed[1] + 1) and restarted_on_loop == 0
    assert (await user.get("/me/services/do-not-disturb")).json()["active"] is True


@pytest.mark.skipif(sys.platform != "linux", reason="struct flock's layout is Linux's")
async def test_the_loop_writer_leaves_sqlites_locks_held(
    make_user: UserFactory, app: FastAPI, database_url: str
) -> None:
    # POSIX drops every lock a process holds on a file when any of its descriptors of that file is closed
    # (sqlite.org/howtocorrupt.html §2.2). Opening SQLite's files ourselves (say, to read the WAL index in `-shm`)
    # would drop the shared lock that tells another process the index is in use, and that process (a backup, the
    # CLI) would then rebuild it under the live node. Asked from another process, as SQLite itself asks.
    user, writer = await _user_and_loop_writer(make_user, app, database_url)
    database = autocommit_of(app.state.hipper).url.database
    probe = (
        "import fcntl, os, struct, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        # Linux's struct flock (x86-64, aarch64); byte 128 of -shm is SQLite's "someone uses this index" lock.
        "wanted = struct.pack('hhqqi4x', fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)\n"
        "kind, _, _, _, pid = struct.unpack('hhqqi4x', fcntl.fcntl(fd, fcntl.F_GETLK, wanted))\n"
        "print(kind == fcntl.F_RDLCK, pid)\n"
    )
    for _ in range(2):  # with the writer open, and again once it has checkpointed on its thread
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", probe, f"{database}-shm", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert out.decode().split() == ["True", str(os.getpid())]
        await save_and_commit(autocommit_of(app.state.hipper), user.id, DoNotDisturb(active=True), writer)
        await asyncio.to_thread(writer._checkpoint)
