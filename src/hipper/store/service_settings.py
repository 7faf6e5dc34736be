"""Reading and writing a user's service settings documents."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Insert, Table, bindparam, insert, literal, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from hipper.domain.errors import DomainError
from hipper.domain.services import ServiceSettings
from hipper.store.db import SQLITE_BUSY_SECONDS, LoopReadsConnection, Prepared, Reads, sqlite_pragmas
from hipper.store.events import EVENT_INSERT, insert_event
from hipper.store.models import Event, ServiceSetting

log = logging.getLogger(__name__)

SERVICE_CHANGED = "service.changed"


def _salvage(settings_class: type[ServiceSettings], data: dict[str, Any]) -> ServiceSettings:
    """Keep every stored value the current model still accepts; the rest falls back to its default.

    A stored document can stop validating when a service's model changes between versions. Refusing to read it
    would break every GET and every call for that user, so the values that still fit are kept, one by one.
    """
    kept = settings_class().model_dump(mode="json")
    pending = {key: value for key, value in data.items() if key in settings_class.model_fields}
    # Values can depend on each other (`active` needs `destination`): repeat until nothing more fits.
    progress = True
    while pending and progress:
        progress = False
        for key, value in list(pending.items()):
            try:
                settings_class.model_validate({**kept, key: value})
            except (ValidationError, DomainError):
                continue
            kept[key] = pending.pop(key)
            progress = True
    return settings_class.model_validate(kept)


def document(settings_class: type[ServiceSettings], user_id: int, data: dict[str, Any] | None) -> ServiceSettings:
    """The document from its stored JSON (None: no row yet, the defaults)."""
    if data is None:
        return settings_class()
    # Stored documents were validated when written; the user rules (`check`) are not run again.
    try:
        return settings_class.model_validate(data)
    except (ValidationError, DomainError):
        log.warning(
            "stored %s settings of user %s no longer validate; keeping what fits", settings_class.service, user_id
        )
        return _salvage(settings_class, dict(data))


# The document column only, not an ORM entity: nothing to keep in the identity map, and `save` writes with a Core
# upsert that an entity held here would not see. Built once: composing it per request cost measurable CPU.
_LOAD = select(ServiceSetting.data).where(
    ServiceSetting.user_id == bindparam("user_id"), ServiceSetting.service == bindparam("service")
)


async def load(session: AsyncSession, user_id: int, settings_class: type[ServiceSettings]) -> ServiceSettings:
    data = (await session.execute(_LOAD, {"user_id": user_id, "service": settings_class.service})).scalar_one_or_none()
    return document(settings_class, user_id, data)


async def read(reads: Reads, user_id: int, settings_class: type[ServiceSettings]) -> ServiceSettings:
    """`load` on the call path's cheap reads (store/db.py `CallPathReads`: on SQLite one statement on the loop,
    ≈ 20 µs, where an ORM session for it cost ≈ 0.5 ms of CPU), for a document a call needs when it has none
    cached (engine/snapshots.py `document`: the recording mode at answer)."""
    rows = await reads.rows(_LOAD, {"user_id": user_id, "service": settings_class.service})
    return document(settings_class, user_id, rows[0][0] if rows else None)


async def load_many(
    session: AsyncSession, user_id: int, settings_classes: list[type[ServiceSettings]]
) -> dict[str, ServiceSettings]:
    """Several of the user's documents in one statement (a PUT needs its own and the related services')."""
    wanted = {settings_class.service: settings_class for settings_class in settings_classes}
    if len(wanted) == 1:
        (settings_class,) = wanted.values()
        return {settings_class.service: await load(session, user_id, settings_class)}
    rows = await session.execute(
        select(ServiceSetting.service, ServiceSetting.data).where(
            ServiceSetting.user_id == user_id, ServiceSetting.service.in_(list(wanted))
        )
    )
    stored: dict[str, dict[str, Any]] = {service: data for service, data in rows}
    return {name: document(settings_class, user_id, stored.get(name)) for name, settings_class in wanted.items()}


def _upsert(dialect: str) -> Insert:
    """INSERT … ON CONFLICT (user_id, service) DO UPDATE: concurrent first writes cannot collide on the key."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(cast(Table, ServiceSetting.__table__)).values(
        user_id=bindparam("user_id"),
        service=bindparam("service"),
        data=bindparam("data", type_=ServiceSetting.__table__.c.data.type),
        updated_at=bindparam("updated_at", type_=ServiceSetting.__table__.c.updated_at.type),
    )
    return statement.on_conflict_do_update(
        index_elements=[ServiceSetting.user_id, ServiceSetting.service],
        set_={"data": statement.excluded.data, "updated_at": statement.excluded.updated_at},
    )


# Built once per dialect with bound parameters, like the selects above.
_UPSERTS = {dialect: _upsert(dialect) for dialect in ("sqlite", "postgresql")}


def _upsert_with_event() -> Insert:
    """PostgreSQL: the upsert and its outbox event as one statement (a CTE with the upsert feeds the event's
    INSERT … SELECT). One statement is atomic by itself, so it needs neither BEGIN nor COMMIT."""
    changed = _UPSERTS["postgresql"].returning(ServiceSetting.user_id).cte("changed")
    event = cast(Table, Event.__table__)
    row = select(
        changed.c.user_id,
        null(),
        literal(SERVICE_CHANGED),
        bindparam("payload", type_=event.c.payload.type),
        bindparam("created_at", type_=event.c.created_at.type),
    )
    return insert(event).from_select(["user_id", "company_id", "type", "payload", "created_at"], row)


_UPSERT_WITH_EVENT = _upsert_with_event()
# SQLite: the same two statements as SQL text for its own driver, with SQLAlchemy's converters (store/db.py).
_SQLITE_UPSERT = Prepared(_UPSERTS["sqlite"], sqlite.dialect())
_SQLITE_EVENT = Prepared(EVENT_INSERT, sqlite.dialect())


def _values(user_id: int, settings: ServiceSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row's values and its `service.changed` event's (the whole new document, as the app's event stream and
    the call path's caches read it)."""
    data = settings.model_dump(mode="json")
    now = datetime.now(UTC)
    row = {"user_id": user_id, "service": settings.service, "data": data, "updated_at": now}
    payload = {"service": settings.service, "settings": data}
    event = {"user_id": user_id, "company_id": None, "type": SERVICE_CHANGED, "payload": payload, "created_at": now}
    return row, event


async def save(session: AsyncSession, user_id: int, settings: ServiceSettings) -> None:
    """Store the document and queue its event in the same transaction (the caller commits).

    One upsert statement, no read first: a read-then-insert let two concurrent first writes of the same service
    both insert, and the loser answered 500 (unique key). Both databases support ON CONFLICT (SQLite ≥ 3.24).
    """
    row, event = _values(user_id, settings)
    await session.execute(_UPSERTS[session.get_bind().dialect.name], row)
    # The event as a Core insert right after the upsert (same transaction, so the outbox stays atomic with the
    # change), rather than an ORM object flushed at commit: the flush machinery cost ≈ 0.3 ms of a PUT.
    await insert_event(session, user_id, SERVICE_CHANGED, event["payload"], event["created_at"])


SLOW_LOOP_WRITE_SECONDS = 0.01


class LoopWriter:
    """A settings write on a SQLite file run on the event loop itself, when it can be had without waiting.

    Handing the transaction to an aiosqlite worker thread costs a GIL hand-off there and back: on a core the loop
    shares (the server is pinned to one), that was the largest single item of a settings PUT in py-spy, ≈ 30 % of
    the server's samples at 300 PUT/s (docs/performance.md). The write itself — BEGIN, one upsert, one event
    insert, COMMIT into the WAL with `synchronous=NORMAL` (no fsync) — takes tens of microseconds. So this
    connection of its own tries it on the loop with a zero busy timeout: `BEGIN IMMEDIATE` either gets the write
    lock at once or fails at once (another connection is writing), and then the caller takes the worker-thread
    path, which waits for the lock there as before. Holding the lock, nothing in the transaction waits.

    A commit can sync the disk twice over, and neither may happen here. A checkpoint (copying the WAL into the
    database file) syncs both files: this connection never checkpoints by itself (`wal_autocheckpoint=0`); every
    `CHECKPOINT_EVERY` commits it asks for a PASSIVE checkpoint on a thread, on a second connection, without
    waiting for it (a passive checkpoint takes no lock writers or readers wait for). The pool's connections still
    checkpoint as before. And once a checkpoint has copied the whole WAL, the next writer starts the WAL over
    from its beginning and syncs its new header, even with `synchronous=NORMAL` (SQLite's wal.c: an
    out-of-order write after a restart could corrupt the database): under load that first commit after a
    checkpoint took 11–39 ms on the loop. So when this writer's own checkpoint reports the whole WAL copied
    (`log == checkpointed`), its next write goes to the worker thread's path (`wal_restarts` counts them), which
    restarts the WAL off the loop. A complete checkpoint by another connection (the pool's autocheckpoint, at
    1000 pages) is not seen: one commit on the loop may then restart the WAL, a slow commit but a correct one.
    (Reading SQLite's WAL index from the `-shm` file instead would see every checkpoint, but opening and closing a
    descriptor of that file drops the process's POSIX locks on it — sqlite.org/howtocorrupt.html §2.2 — and
    another process opening the database then rebuilds the index under the live node.)
    """

    CHECKPOINT_EVERY = 500

    def __init__(self, database: str) -> None:
        self._database = database
        self._connection = self._connect()
        self._connection.execute("PRAGMA busy_timeout=0")  # never wait on the loop
        self._connection.execute("PRAGMA wal_autocheckpoint=0")  # never checkpoint on the loop
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._commits = 0
        self._restart_due = False  # this writer's checkpoint copied the whole WAL: the next commit restarts it
        self.busy = 0  # writes handed to the worker thread because another connection held the lock
        self.wal_restarts = 0  # writes handed to the worker thread because they would start the WAL over
        self.slowest = 0.0  # the longest write on the loop, in seconds

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
        sqlite_pragmas(connection, None)  # as the pool's connections
        return connection

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection (tests trace its statements)."""
        return self._connection

    def try_write(self, upsert: tuple[Any, ...], event: tuple[Any, ...]) -> bool:
        """Write the row and its event in one transaction on this thread; False (nothing written) when another
        connection holds the write lock."""
        started = time.perf_counter()
        cursor = self._connection.cursor()
        try:
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # extended codes too
                    self.busy += 1
                    return False
                raise
            if self._restart_due:
                cursor.execute("ROLLBACK")  # nothing written: the worker thread's path restarts the WAL
                self._restart_due = False
                self.wal_restarts += 1
                return False
            try:
                cursor.execute(_SQLITE_UPSERT.sql, upsert)
                cursor.execute(_SQLITE_EVENT.sql, event)
                cursor.execute("COMMIT")
            except BaseException as exc:
                if self._connection.in_transaction:
                    self._connection.rollback()
                # Busy after BEGIN (at COMMIT, e.g. a database that is not really in WAL mode): rolled back, so
                # nothing was written and the worker thread's path may wait for the lock instead.
                if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF in (
                    sqlite3.SQLITE_BUSY,
                    sqlite3.SQLITE_LOCKED,
                ):
                    self.busy += 1
                    return False
                raise
        finally:
            cursor.close()
        took = time.perf_counter() - started
        self.slowest = max(self.slowest, took)
        if took > SLOW_LOOP_WRITE_SECONDS:  # the loop stood still that long (e.g. the kernel throttled the write)
            log.warning("settings writer: a commit on the loop took %.1f ms", took * 1000)
        self._commits += 1
        if self._commits % self.CHECKPOINT_EVERY == 0 and (self._checkpointing is None or self._checkpointing.done()):
            self._checkpointing = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._checkpoint), name="settings-wal-checkpoint"
            )
        return True

    def _checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = self._connect()
            self._checkpointer.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        try:
            busy, frames, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:  # the pool's connections checkpoint too; the next round tries again
            log.warning("settings writer: WAL checkpoint failed", exc_info=True)
            return
        if not busy and frames >= 0 and frames == copied:  # -1: not in WAL mode
            self._restart_due = True  # read on the loop at the next write (a plain flag: the GIL orders it)

    async def close(self) -> None:
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        self._connection.close()
        if self._checkpointer is not None:
            self._checkpointer.close()


def loop_writer_for(engine: AsyncEngine) -> LoopWriter | None:
    """A `LoopWriter` for the engine's database when it is a SQLite file (None otherwise: PostgreSQL, memory)."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not url.query:
        return LoopWriter(url.database)
    return None


async def save_and_commit(
    engine: AsyncEngine,
    user_id: int,
    settings: ServiceSettings,
    loop_writer: LoopWriter | None = None,
    *,
    connection: AsyncConnection | None = None,
) -> None:
    """`save` and its commit, alone and in one round trip to the database (issue 9: a settings PUT writes its
    change and its outbox event in one go); the caller publishes (`EventHub`). `engine`: `db.autocommit_engine`.

    On a SQLite file: BEGIN, the upsert, the event and COMMIT as one call on a pooled connection's worker thread
    — through an ORM session they took a hand-off each and more (`LoopReadsConnection`). On PostgreSQL: one
    statement (see `_upsert_with_event`), sent without BEGIN and COMMIT. Either way the document and its event
    are committed together or not at all. No ORM session: nothing here needs one. With a `loop_writer` (SQLite
    file), the same transaction runs on the loop when the write lock is free (`LoopWriter`). On PostgreSQL a
    `connection` of `engine` the caller holds (the one its lookup used) saves a pool checkout.
    """
    row, event = _values(user_id, settings)
    if loop_writer is not None and engine.dialect.name == "sqlite":
        upsert, insert_row = _SQLITE_UPSERT.parameters(row), _SQLITE_EVENT.parameters(event)
        if loop_writer.try_write(upsert, insert_row):
            return
    if engine.dialect.name == "postgresql":
        values = {**row, "payload": event["payload"], "created_at": row["updated_at"]}
        async with contextlib.AsyncExitStack() as stack:
            if connection is None:
                connection = await stack.enter_async_context(engine.connect())
            await connection.execute(_UPSERT_WITH_EVENT, values)
            await connection.commit()  # nothing to send in autocommit; ends SQLAlchemy's view of the transaction
        return
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        if not isinstance(driver, LoopReadsConnection):  # in-memory SQLite (tests): SQLAlchemy's way
            await connection.execute(_UPSERTS["sqlite"], row)
            await connection.execute(EVENT_INSERT, event)
            await connection.commit()
            return
        upsert, insert_row = _SQLITE_UPSERT.parameters(row), _SQLITE_EVENT.parameters(event)

        def transaction(sqlite_connection: sqlite3.Connection) -> None:
            cursor = sqlite_connection.cursor()
            try:
                cursor.execute("BEGIN")  # explicit: fails rather than joins when something else left one open
                cursor.execute(_SQLITE_UPSERT.sql, upsert)
                cursor.execute(_SQLITE_EVENT.sql, insert_row)
                sqlite_connection.commit()
            except BaseException:
                sqlite_connection.rollback()
                raise
            finally:
                cursor.close()

        await driver.run_in_thread(transaction)
