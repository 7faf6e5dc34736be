"""The database engine's hot-path tweaks (hipper.store.db): where SQLite statements run, and PostgreSQL's pings.

SQLite reads run on the event loop's thread and writes on aiosqlite's worker thread; these tests check both
halves with a real file database: a read sees the loop's thread, a write does not, and a writer waiting for
another connection's lock leaves the loop free. PostgreSQL pings only connections that sat idle; a connection
whose backend was killed while idle is replaced without the caller noticing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hipper.store import db
from hipper.store.db import create_engine
from tests.support import postgres


def _thread_function(dbapi_connection: Any, _record: Any) -> None:
    # The SQL function answers the id of the thread that runs the statement calling it.
    dbapi_connection.create_function("thread_id", 0, threading.get_ident)


async def _sqlite(path: Path) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    event.listen(engine.sync_engine, "connect", _thread_function)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, thread INTEGER)"))
    return engine


async def test_sqlite_reads_run_on_the_loop_and_writes_on_the_worker(tmp_path: Path) -> None:
    engine = await _sqlite(tmp_path / "t.db")
    try:
        async with engine.begin() as connection:
            read = (await connection.execute(text("SELECT thread_id()"))).scalar_one()
            await connection.execute(text("INSERT INTO t (thread) VALUES (thread_id())"))
            # A read inside a write transaction goes to the worker (an interrupt must not touch the transaction),
            # and sees the uncommitted row.
            inside = (await connection.execute(text("SELECT thread, thread_id() FROM t"))).one()
        async with engine.connect() as connection:
            written = (await connection.execute(text("SELECT thread FROM t"))).scalar_one()
            # Only plain SELECTs: a statement that writes goes to the worker even when it starts with WITH.
            await connection.execute(text("WITH x AS (SELECT 1) INSERT INTO t (thread) SELECT thread_id() FROM x"))
            cte_write = (await connection.execute(text("SELECT thread FROM t ORDER BY id DESC"))).scalars().first()
            await connection.rollback()
            # Rows come back whole and in order however they are fetched.
            series = (
                "SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
                "SELECT x FROM c)"
            )
            many = (await connection.execute(text(series))).scalars().all()
    finally:
        await engine.dispose()
    loop_thread = threading.get_ident()
    assert read == loop_thread
    assert inside == (written, written)
    assert written != loop_thread
    assert cte_write != loop_thread
    assert many == list(range(1, 1001))


async def test_a_long_sqlite_read_leaves_the_loop(tmp_path: Path) -> None:
    # Past its budget on the loop, a read is interrupted and run again on the worker thread: the loop keeps
    # ticking meanwhile, and the answer is complete.
    engine = await _sqlite(tmp_path / "t.db")
    slow = text(
        "SELECT thread_id(), (SELECT count(*) FROM (WITH RECURSIVE c(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT x FROM c))"
    )
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.05)
        async with engine.connect() as connection:
            started = time.perf_counter()
            thread, count = (await connection.execute(slow)).one()
            took = time.perf_counter() - started
    finally:
        ticking.cancel()
        await engine.dispose()
    assert count == 3_000_000
    assert thread != threading.get_ident()
    assert took > 0.1  # long enough that a read kept on the loop would have stalled the ticker
    assert max(gaps) < took / 2, (max(gaps), took)


async def test_a_waiting_sqlite_writer_does_not_block_the_loop(tmp_path: Path) -> None:
    engine = await _sqlite(tmp_path / "t.db")
    try:
        async with engine.connect() as holder, engine.connect() as waiter, engine.connect() as reader:
            await holder.execute(text("INSERT INTO t (thread) VALUES (1)"))  # holds the write lock until commit

            async def second_write() -> float:
                started = time.monotonic()
                await waiter.execute(text("INSERT INTO t (thread) VALUES (2)"))
                await waiter.commit()
                return time.monotonic() - started

            write = asyncio.create_task(second_write())
            # While the second writer waits (busy_timeout) on its worker thread, the loop keeps running, and a
            # read on the loop does not wait for either writer (WAL): it sees the last committed state.
            ticks = 0
            for _ in range(20):
                await asyncio.sleep(0.01)
                ticks += 1
            assert not write.done()
            assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
            await holder.commit()
            waited = await asyncio.wait_for(write, 5)
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT thread FROM t ORDER BY id"))).scalars().all()
    finally:
        await engine.dispose()
    assert ticks == 20
    assert waited >= 0.2
    assert rows == [1, 2]


@pytest.fixture
def postgres_url(postgres_server: postgres.PostgresServer) -> str:
    return postgres_server.url()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(url: str, pid: int) -> None:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await admin.dispose()


async def test_postgres_replaces_a_connection_that_died_while_idle(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.2)
    engine = create_engine(postgres_url)
    try:
        first = await _backend_pid(engine)
        await _terminate(postgres_url, first)
        await asyncio.sleep(0.3)  # idle longer than the threshold: the checkout pings and finds it dead
        second = await _backend_pid(engine)
    finally:
        await engine.dispose()
    assert second != first


async def test_postgres_pings_only_connections_that_sat_idle(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

    pings: list[object] = []
    original = AsyncAdapt_asyncpg_connection.ping

    def counting_ping(self: AsyncAdapt_asyncpg_connection) -> None:
        pings.append(self)
        original(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting_ping)
    # Idle for a second counts as idle: a loaded machine may pause the loop for a good part of a second between two
    # uses, which is no idling.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 1.0)
    engine = create_engine(postgres_url)
    try:
        first = await _backend_pid(engine)  # a new connection: just opened, not pinged
        for _ in range(5):  # used a moment ago each time
            assert await _backend_pid(engine) == first
        busy_pings = len(pings)
        await asyncio.sleep(1.2)
        assert await _backend_pid(engine) == first
    finally:
        await engine.dispose()
    assert busy_pings == 0
    assert len(pings) == 1
