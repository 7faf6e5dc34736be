"""What calls write when they end (call-log rows and outbox events), batched into one transaction; also the
`active_calls` rows of who is on a call (store/presence.py).

Each call used to open its own session and commit for its call-log rows and events; at tens of calls per second
those commits and sessions were a large share of a call's CPU and of the pool's connections. Here one task takes
whatever calls have handed in since it last wrote and writes it all in one transaction: one connection, one
multi-row INSERT of call logs, one of events, one commit; `BATCH_WINDOW_SECONDS` after one commit before the
next (a quiet writer writes at once), and on SQLite on one connection it keeps. A call still waits until its own rows
are committed (`write` returns then), so nothing reads a call as ended before its log exists. If a batch fails,
every call's part is retried in a transaction of its own, so one bad record costs only its own call's log.
`close` writes everything still queued before it returns: a shutdown loses no call log.

On SQLite (a file database, `store/db.py`'s `LoopReadsConnection`) a batch's transaction runs on the
connection's worker thread in one hand-off: the two INSERTs as SQL text with each column's own SQLAlchemy bind
processor (so the stored values are exactly what the Core statements store), then the commit. Through
SQLAlchemy the same transaction took a hand-off to that thread and back for BEGIN, each statement, its cursor
and the commit, ≈ 0.4 ms of the loop's CPU per transaction (docs/performance.md). PostgreSQL keeps the Core
statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from hipper.store.active_calls import CallJoined, CallLeft
from hipper.store.call_logs import CallRecord
from hipper.store.db import LoopReadsConnection
from hipper.store.models import ActiveCall, CallLog, Event

log = logging.getLogger(__name__)

MAX_BATCH = 200  # calls' worth of rows per transaction
# After each commit the writer waits this long before the next one: what is handed in meanwhile goes in one
# transaction (the batch window). Each call hands in three or four things at different moments (its
# `call.started` event, who is on it, its call-log rows), and written as they came, at 40 calls/s that was
# ≈ 2 transactions per call; a transaction costs ≈ 0.3–0.5 ms of CPU, on the loop and the connection's thread
# together, and wakes the live-event streams (docs/performance.md). Counted from the end of the last commit, not
# its start: where a transaction takes long (PostgreSQL on a busy machine) the writes that queued meanwhile
# already batch, and a window from the start would commit more often than that. A writer that has not committed
# for this long writes at once, so a quiet exchange adds no delay; a crash loses at most what one window and one
# transaction hold, never half of it. 100 ms, not 50: at 40 calls/s half the transactions (0.5 → 0.25 per call),
# ≈ 0.1–0.2 ms less CPU per call (`bench.sip.writer`, docs/performance.md "Twelfth session"), while the app's
# call state and another node's view of who is on a call lag by at most a tenth of a second more.
BATCH_WINDOW_SECONDS = 0.1


@dataclass(frozen=True)
class OutboxEvent:
    """An outbox event to write on its own (e.g. `call.started` for the app)."""

    user_id: int | None
    type: str
    payload: dict[str, Any]


# Call-log rows and outbox events; and who is on a call (store/presence.py), which rides along in the same
# transactions instead of costing each answered call one of its own.
Item = CallRecord | OutboxEvent | CallJoined | CallLeft


# Core statements, not ORM entities: the ORM sends one INSERT per event (it fetches every new id), these send
# one multi-row INSERT … RETURNING for the call logs (their ids go into the events) and one executemany for the
# events, however many calls the batch holds.
_INSERT_LOGS = insert(CallLog).returning(CallLog.id, sort_by_parameter_order=True)
_INSERT_EVENTS = insert(Event)
_INSERT_ACTIVE = insert(ActiveCall)
_DELETE_ACTIVE = delete(ActiveCall).where(ActiveCall.id == bindparam("gone"))


async def write_items(connection: AsyncConnection, items: Sequence[Item]) -> None:
    """Add `items` in their order (the caller commits): each call-log row, then its `call_log.added` event and
    the record's further events; an `OutboxEvent` where it stands. Every record is validated before anything
    is written."""
    records = [item for item in items if isinstance(item, CallRecord)]
    ids: list[int] = []
    if records:
        rows = [record.values() for record in records]
        ids = list((await connection.execute(_INSERT_LOGS, rows)).scalars())
    events = _events(items, ids, datetime.now(UTC))
    if events:
        await connection.execute(_INSERT_EVENTS, events)
    joined, left = _presence(items)
    if joined:
        await connection.execute(_INSERT_ACTIVE, joined)
    if left:
        await connection.execute(_DELETE_ACTIVE, [{"gone": gone} for gone in left])


def _presence(items: Sequence[Item]) -> tuple[list[dict[str, Any]], list[str]]:
    """The `active_calls` rows to add and the ids to delete. All adds go first: a call's end is queued after
    its answer, so a row added and deleted in one batch is added, then deleted."""
    joined = [item.values() for item in items if isinstance(item, CallJoined)]
    return joined, [item.id for item in items if isinstance(item, CallLeft)]


def _outbox(items: Sequence[Item]) -> list[tuple[int | None, str, dict[str, Any], bool]]:
    """The outbox events of `items` in their order as (user, type, payload, is the row's own `call_log.added`):
    that one's payload gets the row's id when the transaction knows it (`_events`)."""
    outbox: list[tuple[int | None, str, dict[str, Any], bool]] = []
    for item in items:
        if isinstance(item, CallRecord):
            outbox.append((item.user_id, "call_log.added", {"kind": item.kind}, True))
            outbox.extend((item.user_id, type_, payload, False) for type_, payload in item.events)
        elif isinstance(item, OutboxEvent):
            outbox.append((item.user_id, item.type, item.payload, False))
    return outbox


def _published(items: Sequence[Item]) -> list[tuple[str, dict[str, Any]]]:
    """The outbox events of `items` as (type, payload) for those told of a commit (`BatchWriter.committed`); a
    `call_log.added` payload without the row's id, which only the transaction knew."""
    return [(type_, payload) for _, type_, payload, _ in _outbox(items)]


def _events(items: Sequence[Item], log_ids: list[int], now: datetime) -> list[dict[str, Any]]:
    """The outbox rows of `items` in their order; `log_ids` are the ids their call-log rows got, in order."""
    logs = iter(log_ids)
    return [
        {
            "user_id": user_id,
            "company_id": None,
            "type": type_,
            "payload": {"id": next(logs), **payload} if own_log else payload,
            "created_at": now,
        }
        for user_id, type_, payload, own_log in _outbox(items)
    ]


@dataclass(frozen=True)
class _Insert:
    """A single-row INSERT into `table` as SQLite SQL text, and how to turn a dict of values into its
    parameters: each column's bind processor as SQLAlchemy's SQLite dialect has it (JSON to text, datetimes to
    SQLite's text format), so rows read back through SQLAlchemy exactly as if it had written them."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(cls, table: Table, dialect: Dialect, returning: str = "", *, with_key: bool = False) -> _Insert:
        """`with_key`: the caller gives the primary key (otherwise the database makes it)."""
        columns = [column for column in table.columns if with_key or not column.primary_key]
        quote = dialect.identifier_preparer
        names = ", ".join(quote.format_column(column) for column in columns)
        sql = f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({', '.join('?' for _ in columns)})"
        if returning:
            sql += f" RETURNING {quote.quote(returning)}"
        processors = tuple(column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns)
        return cls(sql, tuple(column.name for column in columns), processors)

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None or value is None else process(value)
            for process, value in zip(self.processors, (values.get(name) for name in self.columns), strict=True)
        )


@dataclass
class _Job:
    items: Sequence[Item]
    done: asyncio.Future[None]


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _log_failure(logger: logging.Logger, message: str, extra: dict[str, object], done: asyncio.Future[None]) -> None:
    error = None if done.cancelled() else done.exception()
    if error is not None:
        logger.error(message, exc_info=error, extra=extra)


# Pauses before writing a batch again after a transient failure (the database locked past its busy timeout, a
# PostgreSQL connection lost in a failover): then its calls fail (logged).
TRANSIENT_RETRY_SECONDS = (0.1, 0.5)


def _transient(error: BaseException) -> bool:
    """A failure of the database or the link, not of the records: the same batch may well go through again."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError))
    return isinstance(error, (sqlite3.OperationalError, sqlite3.InterfaceError, ConnectionError, OSError))


class BatchWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = MAX_BATCH,
        window: float = BATCH_WINDOW_SECONDS,
    ) -> None:
        self.sessions = sessions
        self._engine = sessions.kw["bind"]
        self.max_batch = max_batch
        self.window = window
        self._pending: list[_Job] = []
        self._wake = asyncio.Event()
        self._last_batch = -1e9  # loop time when the last batch was written
        self._hurry: asyncio.Future[None] | None = None  # the window's wait, ended early by `close`
        # SQLite: the connection the batch task writes on, kept from one batch to the next (`_commit`).
        self._held: tuple[AsyncConnection, LoopReadsConnection] | None = None
        self._task: asyncio.Task[None] | None = None
        self._alone: set[asyncio.Task[None]] = set()  # `submit`s while not running, being written
        self._closing = False
        self.transactions = 0  # tests and benchmarks read these
        self.jobs = 0
        # Told after each batch's commit that wrote outbox events, with those events as (type, payload).
        self.committed: list[Callable[[Sequence[tuple[str, dict[str, Any]]]], None]] = []
        # Statements sent past SQLAlchemy (the SQLite path), by SQL text: SQLAlchemy's events do not see them.
        self.direct_statements: Counter[str] = Counter()
        dialect = self._engine.dialect
        self._logs = _Insert.of(cast(Table, CallLog.__table__), dialect, returning="id")
        self._events = _Insert.of(cast(Table, Event.__table__), dialect)
        self._active = _Insert.of(cast(Table, ActiveCall.__table__), dialect, with_key=True)
        self._left = "DELETE FROM active_calls WHERE id = ?"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def write(self, items: Sequence[Item]) -> None:
        """Write `items` in one transaction with whatever else is queued; returns once they are committed."""
        if not items:
            return
        if self._task is None or self._task.done():
            # Not running (not started, or closed): write at once, alone.
            await self._commit(items)
            self.jobs += 1
            return
        job = _Job(items, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._wake.set()
        # Shielded: a call cancelled while waiting (shutdown) leaves its rows queued, and `close` writes them.
        await asyncio.shield(job.done)

    def submit(self, items: Sequence[Item]) -> asyncio.Future[None]:
        """`write` without waiting and without a task of its own: the future is done once `items` are committed,
        or fails as `write` would. They join the queue at the loop's next turn, where a task calling `write`
        would have put them, so they share a batch with what the same moment's other tasks write."""
        loop = asyncio.get_running_loop()
        job = _Job(items, loop.create_future())
        loop.call_soon(self._enqueue, job)
        return job.done

    def submit_logged(
        self, items: Sequence[Item], logger: logging.Logger, message: str, extra: dict[str, object]
    ) -> asyncio.Future[None]:
        """`submit` for a caller that goes on without waiting (a call's live events, presence rows): a failure is
        logged on `logger` as `message` with `extra` once the batch is settled, and the caller is not told."""
        done = self.submit(items)
        done.add_done_callback(functools.partial(_log_failure, logger, message, extra))
        return done

    def _enqueue(self, job: _Job) -> None:
        if self._task is not None and not self._task.done():
            self._pending.append(job)
            self._wake.set()
            return
        # Not running (not started, or closed meanwhile): written at once, alone, like `write` would.
        task = asyncio.get_running_loop().create_task(self._write_alone(job))
        self._alone.add(task)
        task.add_done_callback(self._alone.discard)

    async def _write_alone(self, job: _Job) -> None:
        try:
            await self._commit(job.items)
        except Exception:
            self._settle(job, failed=True)
        else:
            self._settle(job)

    async def close(self) -> None:
        """Write everything queued, then stop (not cancelled midway: a batch taken is a batch written)."""
        if self._task is None:
            return
        task, self._task = self._task, None  # writes from now on go straight to the database
        self._closing = True
        self._wake.set()
        if self._hurry is not None and not self._hurry.done():
            self._hurry.set_result(None)  # what waits for the window is written now
        await task
        await asyncio.sleep(0)  # a `submit` of the moment before the close joins at this turn: written alone
        while self._alone:  # written alone meanwhile (a `submit` that came after the task ended): wait for them
            await asyncio.gather(*self._alone, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    await self._wait_for_window(loop)
                    await self._write_batch()
                    self._last_batch = loop.time()
                if self._closing:
                    return
        finally:
            await self._release_held()

    async def _wait_for_window(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until `window` has passed since the last batch was written (at once when closing, or with a full
        batch)."""
        delay = self._last_batch + self.window - loop.time()
        if delay <= 0 or self._closing or len(self._pending) >= self.max_batch:
            return
        self._hurry = hurry = loop.create_future()
        timer = loop.call_later(delay, _done, hurry)
        try:
            await hurry
        finally:
            timer.cancel()
            self._hurry = None

    async def _write_batch(self) -> None:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        items = [item for job in batch for item in job.items]
        for pause in (*TRANSIENT_RETRY_SECONDS, None):
            try:
                await self._commit(items, hold=True)
            except Exception as error:
                if pause is not None and _transient(error):
                    # The database is busy or the link dropped: the same batch again in a moment. Split into
                    # single calls, each would wait out the busy timeout in turn and then be lost all the same.
                    log.warning("writer.batch_retried", exc_info=True, extra={"jobs": len(batch), "pause": pause})
                    await asyncio.sleep(pause)
                    continue
                if len(batch) == 1 or _transient(error):
                    for job in batch:
                        self._settle(job, failed=True)
                    return
                log.warning("writer.batch_failed", exc_info=True, extra={"jobs": len(batch)})
                for job in batch:  # one call's bad record must not cost the others their logs
                    await self._write_alone(job)
                return
            for job in batch:
                self._settle(job)
            return

    def _settle(self, job: _Job, *, failed: bool = False) -> None:
        self.jobs += 1
        if job.done.done():
            return
        if failed:
            log.exception("writer.job_failed")
            job.done.set_exception(RuntimeError("call records not written (logged above)"))
            job.done.exception()  # retrieved: a job whose call was cancelled must not warn "never retrieved"
        else:
            job.done.set_result(None)

    async def _commit(self, items: Sequence[Item], *, hold: bool = False) -> None:
        """`hold`: the batch task's own writes; on SQLite they keep one connection from batch to batch instead of
        taking one from the pool (and giving it back) each time."""
        if hold and self._held is not None:
            await self._commit_held(self._held, items)
        else:
            # A Core connection, not an ORM session: given a list of parameter sets, an ORM session runs its bulk
            # insert machinery (per-row object state), which cost more than the statements themselves.
            connection = await self._engine.connect()
            kept = False
            try:
                driver = (await connection.get_raw_connection()).driver_connection
                if isinstance(driver, LoopReadsConnection):
                    if hold:
                        self._held = (connection, driver)
                        kept = True
                        await self._commit_held(self._held, items)
                    else:
                        await self._commit_on_sqlite_thread(driver, items)
                else:
                    async with connection.begin():
                        await write_items(connection, items)
            finally:
                if not kept:
                    await connection.close()
        self.transactions += 1
        if self.committed and (written := _published(items)):  # a batch that wrote events
            for committed in self.committed:
                committed(written)  # e.g. this node's live-event streams look at once (api/app.py attach_calls)

    async def _commit_held(self, held: tuple[AsyncConnection, LoopReadsConnection], items: Sequence[Item]) -> None:
        try:
            await self._commit_on_sqlite_thread(held[1], items)
        except BaseException:
            # Whatever went wrong, the next batch starts on a fresh connection: this one may be closed, or (had
            # the rollback failed too) still in the transaction.
            self._held = None
            with contextlib.suppress(Exception):
                await held[0].invalidate()
                await held[0].close()
            raise

    async def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held[0].close()

    async def _commit_on_sqlite_thread(self, driver: LoopReadsConnection, items: Sequence[Item]) -> None:
        """What `write_items` and a commit do, as one call on the SQLite connection's worker thread."""
        # Validated and converted here, before the transaction: a bad record fails the batch without a write.
        logs = [self._logs.parameters(item.values()) for item in items if isinstance(item, CallRecord)]
        joined, left = _presence(items)
        active = [self._active.parameters(row) for row in joined]
        now = datetime.now(UTC)

        def transaction(connection: sqlite3.Connection) -> int:
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN")  # explicit: whatever the sqlite3 module's implicit-transaction mode
                ids = [int(cursor.execute(self._logs.sql, row).fetchall()[0][0]) for row in logs]
                events = [self._events.parameters(event) for event in _events(items, ids, now)]
                if events:
                    cursor.executemany(self._events.sql, events)
                if active:
                    cursor.executemany(self._active.sql, active)
                if left:
                    cursor.executemany(self._left, [(gone,) for gone in left])
                connection.commit()
                return len(events)
            except BaseException:
                connection.rollback()
                raise
            finally:
                cursor.close()

        if await driver.run_in_thread(transaction):
            self.direct_statements[self._events.sql] += 1
        if logs:
            self.direct_statements[self._logs.sql] += len(logs)
        if active:
            self.direct_statements[self._active.sql] += 1
        if left:
            self.direct_statements[self._left] += 1
