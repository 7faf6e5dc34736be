"""Database engine, sessions and migrations (async SQLAlchemy; aiosqlite or asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import Select, UpdateBase, event, exc
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_SECONDS = 5
# A pooled PostgreSQL connection idle longer than this is pinged before use (see `_ping_when_idle`).
PING_AFTER_IDLE_SECONDS = 2.0

# A read on the loop may run this long before SQLite interrupts it and it runs again on the worker thread.
LOOP_READ_BUDGET_SECONDS = 0.002
# SQLite virtual-machine instructions between two looks at the clock (a few tens of microseconds of work).
_PROGRESS_STEPS = 1000
_FETCHES = frozenset({"fetchone", "fetchmany", "fetchall"})
_R = TypeVar("_R")
AnySelect = Select[*tuple[Any, ...]]


class _OverBudget(Exception):
    pass


_REQUIRED = object()  # a bind without a value of its own (`Prepared`)


def _read_all(cursor: sqlite3.Cursor, *args: Any) -> list[Any]:
    cursor.execute(*args)
    return cursor.fetchall()


# How long a failed connection's worker thread is waited for (it only has to return from its stop).
STOP_WAIT_SECONDS = 5.0


class LoopReadsConnection(aiosqlite.Connection):
    """aiosqlite, except that short reads run on the event loop's thread instead of the connection's worker thread.

    aiosqlite hands every call to a per-connection thread and back: four round trips per statement (cursor,
    execute, fetch, close) plus the rollback when the pool takes the connection back. Each is a GIL hand-off
    that, on a busy loop, waits for the interpreter's switch interval (5 ms) — a settings GET cost nine of them,
    which was most of its latency under load (docs/performance.md). A read from SQLite's page cache takes tens
    of microseconds, less than one hand-off, so a plain SELECT outside a write transaction runs right here,
    executed and fetched in one go (the rows are kept for the fetch calls that follow). In WAL mode such a read
    never waits for a lock (readers do not block on writers). So that a big read cannot stall the loop — SIP
    timers and RTP share it — SQLite's progress handler interrupts a read on the loop after
    `LOOP_READ_BUDGET_SECONDS`, and it runs again, from the start, on the worker thread (a SELECT has no effects,
    so running it twice is safe). Everything else — writes (which may queue behind another writer's lock for up
    to `busy_timeout`), reads inside a write transaction (an interrupt must not touch it), commits (which may
    checkpoint and fsync), PRAGMAs, closing — goes through the worker thread as before, one hand-off each.
    Calls on one connection never overlap (SQLAlchemy awaits each), so the sqlite3 connection is used by one
    thread at a time; it is opened with `check_same_thread=False`.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        # Rows of reads already run to completion, by cursor, handed out by the fetch calls that follow.
        self._rows: dict[sqlite3.Cursor, list[Any]] = {}
        self._stopped: asyncio.Future[Any] | None = None

    def stop(self) -> asyncio.Future[Any] | None:
        self._stopped = super().stop()
        return self._stopped

    async def _connect(self) -> aiosqlite.Connection:
        try:
            return await super()._connect()
        except Exception:
            # A database that cannot be opened: aiosqlite stops the worker thread without waiting for it, and the
            # thread then hands its stop's result to a loop that may have closed meanwhile (a health check's, at
            # shutdown) and raises there. Waited for here, while the loop runs.
            if self._stopped is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._stopped), STOP_WAIT_SECONDS)
            raise

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        owner = getattr(fn, "__self__", None)
        name = getattr(fn, "__name__", "")
        if isinstance(owner, sqlite3.Cursor):
            rows = self._rows.get(owner)
            if rows is not None and name in _FETCHES:
                return _take(rows, name, owner, *args)
            if name == "close":
                self._rows.pop(owner, None)
            if name in _FETCHES or name == "close":
                # Rows a write's RETURNING already produced, or the cursor's end: no lock to wait for.
                self._check_open()
                return fn(*args, **kwargs)
            if name == "execute" and args and isinstance(args[0], str) and _is_select(args[0]):
                self._check_open()
                if not self._conn.in_transaction:
                    try:
                        self._rows[owner] = self._read_within_budget(owner, args)
                    except _OverBudget:
                        pass
                    else:
                        return owner
                self._rows[owner] = await super()._execute(_read_all, owner, *args)  # type: ignore[no-untyped-call]
                return owner
        elif isinstance(owner, sqlite3.Connection) and (
            name == "cursor" or (name in ("rollback", "commit") and not owner.in_transaction)
        ):
            # A new cursor is a struct; a rollback or commit with no transaction open (after reads only, or after
            # a transaction `run_in_thread` committed) does nothing.
            self._check_open()
            return fn(*args, **kwargs)
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def run_in_thread(self, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        """`fn(sqlite3 connection)` on the connection's worker thread: a whole transaction in one hand-off
        (store/writer.py), where SQLAlchemy would take one per statement, one for the commit and more."""
        self._check_open()
        result: _R = await super()._execute(fn, self._conn)  # type: ignore[no-untyped-call]
        return result

    def _check_open(self) -> None:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")

    def _read_within_budget(self, cursor: sqlite3.Cursor, args: tuple[Any, ...]) -> list[Any]:
        return _read_within_budget(self._conn, cursor, args)


class _ReadBudget:
    """`LOOP_READ_BUDGET_SECONDS` for reads on the loop: set as a connection's progress handler, it interrupts a read
    that runs past it (`read` then raises `_OverBudget`, and the caller runs it again off the loop)."""

    __slots__ = ("deadline", "over")

    def __init__(self) -> None:
        self.deadline = 0.0
        self.over = False

    def progress(self) -> int:
        self.over = time.perf_counter() > self.deadline
        return 1 if self.over else 0  # non-zero interrupts the statement (SQLITE_INTERRUPT)

    def read(self, cursor: sqlite3.Cursor, args: tuple[Any, ...]) -> list[Any]:
        self.over = False
        self.deadline = time.perf_counter() + LOOP_READ_BUDGET_SECONDS
        try:
            return _read_all(cursor, *args)
        except sqlite3.OperationalError:
            if self.over:
                raise _OverBudget from None
            raise


def _read_within_budget(connection: sqlite3.Connection, cursor: sqlite3.Cursor, args: tuple[Any, ...]) -> list[Any]:
    """The rows of a read run right here, or `_OverBudget` once it took `LOOP_READ_BUDGET_SECONDS`: the budget's
    handler set for this read only (the connection's worker thread runs writes on it too)."""
    budget = _ReadBudget()
    connection.set_progress_handler(budget.progress, _PROGRESS_STEPS)
    try:
        return budget.read(cursor, args)
    finally:
        connection.set_progress_handler(None, 0)


class Prepared:
    """A statement compiled once for SQLite's own driver: its SQL text, the order of its parameters, and
    SQLAlchemy's own converters for the parameters (JSON to text, datetimes to SQLite's text format) and, for a
    SELECT, the result columns (back again), so what is sent or read is exactly what SQLAlchemy would."""

    def __init__(self, statement: AnySelect | UpdateBase, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.compiled = compiled
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:
            # An expanding parameter (`in_` of a Python list) is rendered per execution by SQLAlchemy; compiled
            # once, it would reach SQLite as "[POSTCOMPILE_…]". Refused here, where the statement is written.
            raise ValueError(f"not a statement for the cheap reads (expanding IN): {self.sql}")
        self.names = tuple(compiled.positiontup or ())
        self.binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        )
        selected = statement.selected_columns if isinstance(statement, Select) else ()
        self.results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in selected)
        # Where each parameter's value comes from, as `construct_params` finds it but without building its
        # dictionary of every bind (≈ 1 µs a statement): the caller's value under the bind's key, else under its
        # name in the SQL (an anonymous bind's key is not its name), else the bind's own value (a literal such as
        # LIMIT's); none of the three: `construct_params`, which raises SQLAlchemy's error. Only for statements
        # whose names are not escaped and whose values are not computed when the statement runs (a callable).
        binds = [compiled.binds[name] for name in self.names]
        self._plain = not compiled.escaped_bind_names and all(bind.callable is None for bind in binds)
        self._slots = tuple(
            (bind.key, name, _REQUIRED if bind.required else bind.value, process)
            for name, bind, process in zip(self.names, binds, self.binds, strict=True)
        )
        # The result columns that need converting, by position (none: rows are handed out as SQLite gives them).
        self._converted = tuple((index, process) for index, process in enumerate(self.results) if process is not None)

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        if self._plain:
            parameters: list[Any] = []
            try:
                for key, name, default, process in self._slots:
                    if key in values:
                        value = values[key]
                    elif name in values:
                        value = values[name]
                    elif default is _REQUIRED:
                        break  # missing: `construct_params` says so, below
                    else:
                        value = default
                    parameters.append(value if process is None or value is None else process(value))
                else:
                    return tuple(parameters)
            except Exception:
                pass  # a value its converter refuses: the error as SQLAlchemy's order of work gives it, below
        given = self.compiled.construct_params(values)  # with the statement's own literals (LIMIT)
        return tuple(
            given[name] if process is None or given[name] is None else process(given[name])
            for name, process in zip(self.names, self.binds, strict=True)
        )

    def row(self, raw: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(raw) != len(self.results):  # not from this statement: SQLAlchemy's converters, then the error
            return tuple(
                value if process is None or value is None else process(value)
                for process, value in zip(self.results, raw, strict=True)
            )
        if not self._converted:
            return raw
        row = list(raw)
        for index, process in self._converted:
            value = row[index]
            if value is not None:
                row[index] = process(value)
        return tuple(row)


class CallPathReads:
    """The few reads every call makes (engine/snapshots.py: the outbox look, the user's bindings), as cheap as
    the database allows.

    On a SQLite file they run on a sqlite3 connection of their own, on the loop, each statement compiled once:
    through SQLAlchemy each cost ≈ 60 µs for the pooled connection and ≈ 120–170 µs for the statement
    (docs/performance.md), here ≈ 20 µs. In WAL mode a read never waits for a writer and sees every commit made
    before it started, like any pooled connection. A read that runs over `LOOP_READ_BUDGET_SECONDS` (a big
    catch-up) is interrupted and runs again on a pooled connection. Elsewhere (PostgreSQL, in-memory SQLite)
    `connect` hands out a pooled connection, one for all the reads of one `async with`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite: sqlite3.Connection | None = None
        self._prepared: dict[AnySelect, Prepared] = {}
        self.direct_statements: Counter[str] = Counter()  # by SQL text: SQLAlchemy's events do not see these
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not url.query:
            self._sqlite = sqlite3.connect(url.database, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)
            self._sqlite.execute("PRAGMA query_only=ON")  # reads only, whatever a caller hands in
            # The read budget's handler set once: every statement on this connection is a read on the loop.
            self._budget = _ReadBudget()
            self._sqlite.set_progress_handler(self._budget.progress, _PROGRESS_STEPS)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Reads]:
        if self._sqlite is not None:
            yield self
            return
        async with self._engine.connect() as connection:
            yield PooledReads(connection)

    async def rows(self, statement: AnySelect, values: dict[str, Any] | None = None) -> Sequence[Any]:
        connection = self._sqlite
        if connection is None:
            async with self._engine.connect() as pooled:
                return await PooledReads(pooled).rows(statement, values)
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = Prepared(statement, self._engine.dialect)
        self.direct_statements[prepared.sql] += 1
        parameters = prepared.parameters(values or {})
        cursor = connection.cursor()
        try:
            raw = self._budget.read(cursor, (prepared.sql, parameters))
        except _OverBudget:
            async with self._engine.connect() as pooled:  # again, off the loop
                return await PooledReads(pooled).rows(statement, values)
        finally:
            cursor.close()
        return [prepared.row(row) for row in raw]


class Reads(Protocol):
    async def rows(self, statement: AnySelect, values: dict[str, Any] | None = None) -> Sequence[Any]: ...


class PooledReads:
    """`Reads` on a connection or session the caller holds."""

    def __init__(self, connection: AsyncConnection | AsyncSession) -> None:
        self._connection = connection

    async def rows(self, statement: AnySelect, values: dict[str, Any] | None = None) -> Sequence[Any]:
        rows: Sequence[Any] = (await self._connection.execute(statement, values or {})).all()
        return rows


def _take(rows: list[Any], name: str, cursor: sqlite3.Cursor, *args: Any) -> Any:
    if name == "fetchall":
        taken = rows[:]
    elif name == "fetchone":
        return rows.pop(0) if rows else None
    else:
        taken = rows[: args[0] if args else cursor.arraysize]
    del rows[: len(taken)]
    return taken


def _is_select(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


def _loop_reads_creator(database: str) -> Callable[[], aiosqlite.Connection]:
    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)

    def create() -> aiosqlite.Connection:
        connection = LoopReadsConnection(connector, iter_chunk_size=64)
        # As SQLAlchemy does for aiosqlite's own connections: a forgotten connection must not keep the process up.
        connection._thread.daemon = True
        return connection

    return create


def _drop_connection_left_in_a_transaction(context: ExceptionContext) -> None:
    """Invalidate an SQLite connection whose COMMIT failed but whose transaction is still open.

    SQLite keeps the transaction when a COMMIT fails (SQLITE_BUSY, a deferred foreign key), so that it may be
    retried; SQLAlchemy takes a failed commit for an ended transaction and hands the connection back to the pool
    without a rollback. The next session on it would then run inside the stale transaction: see its rows, keep
    the write lock (every other writer waits, then fails) and commit them along with its own — changes the
    first caller was told had failed. Marked as a disconnect, only this connection is closed (SQLite rolls the
    transaction back) and the pool opens a fresh one.
    """
    if context.statement is not None or context.connection is None:
        return  # a statement's own error: SQLAlchemy rolls its transaction back as usual
    try:
        driver = context.connection.connection.driver_connection
        sqlite_connection = getattr(driver, "_conn", None)
        still_open = isinstance(sqlite_connection, sqlite3.Connection) and sqlite_connection.in_transaction
    except (ValueError, AttributeError, sqlite3.Error):  # already closed: nothing left to leak
        return
    if still_open:
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# Call processing shares the pool with the API: hundreds of concurrent calls ramping up at tens per second, on a
# loop that may stall for a moment on a shared core, exhausted the defaults (5 + 10 on SQLite, 10 + 10 on
# PostgreSQL) and new calls got 500. Sessions are short (no connection is held across a wait), so the pool only
# needs to ride out bursts.
SQLITE_POOL = {"pool_size": 10, "max_overflow": 30}
POSTGRES_POOL = {"pool_size": 20, "max_overflow": 20}


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not make_url(url).query:
            # A file database in WAL mode: reads on the loop (LoopReadsConnection).
            engine = create_async_engine(url, async_creator=_loop_reads_creator(database), **SQLITE_POOL)
        else:
            # In memory (or with URL options): SQLAlchemy's default pool, which takes no size settings.
            engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        event.listen(engine.sync_engine, "handle_error", _drop_connection_left_in_a_transaction)
        return engine
    engine = create_async_engine(url, **POSTGRES_POOL)
    event.listen(engine.sync_engine, "connect", _mark_used)
    event.listen(engine.sync_engine, "checkin", _mark_used)
    event.listen(engine.sync_engine, "checkout", _ping_when_idle)
    return engine


def _mark_used(_dbapi_connection: Any, record: Any) -> None:
    record.info["hipper_used_at"] = time.monotonic()


def _ping_when_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Ping a pooled connection before use only when it sat idle; a busy pool's connections were just in use.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and for asyncpg a ping is three round trips (BEGIN,
    `;`, ROLLBACK): more than the two statements of a settings GET (docs/performance.md). A connection that
    answered within the last `PING_AFTER_IDLE_SECONDS` is handed out as it is. Should the server have gone away
    in that window, the statement fails, SQLAlchemy sees a disconnect and invalidates every connection of the
    pool opened before it (so one request fails, as it would if the server went away mid-request); an idle
    connection — the usual victim of a restart, a failover or a firewall's idle timeout — is still checked.
    Raising DisconnectionError makes the pool discard this connection and try a fresh one.
    """
    used_at = record.info.get("hipper_used_at")
    if used_at is not None and time.monotonic() - used_at < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise exc.DisconnectionError("the pooled connection did not answer a ping") from error


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """`engine` for statements that each stand alone — the settings GET's one SELECT, the PUT's SELECT and its
    one-statement write (`service_settings.save_and_commit`): on PostgreSQL in autocommit (no BEGIN, no COMMIT or
    ROLLBACK: the driver just does not send them, so switching costs nothing); SQLite's own engine as it is (its
    reads need no BEGIN, and the sqlite3 module opens one only before a write)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent). Areas add migrations side by side, hence "heads"."""

    def _upgrade(connection: Any) -> None:
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
