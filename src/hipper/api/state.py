"""What the running exchange shares with every request: configuration, database, hashing, event hub."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hipper.api.login_guard import UnknownNameFailures
from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.store.db import CallPathReads
from hipper.store.events import NEWEST_EVENT, listen
from hipper.store.service_settings import LoopWriter

# What a listener wants to be woken for, judged on an outbox event's type and payload (`EventHub.subscribe`).
Interest = Callable[[str, Mapping[str, Any]], bool]
# The outbox events a commit wrote, as (type, payload), when the committer knows them (`EventHub.published`).
Published = Sequence[tuple[str, Mapping[str, Any]]]


class EventHub:
    """Wakes live-event listeners when new outbox rows may exist; listeners then read the rows themselves.

    Three things wake them: a commit on this node (`published`, immediate); on PostgreSQL, a notification that
    another node committed outbox rows (LISTEN, store/events.py `listen`: milliseconds); and a watcher that polls
    the newest event id every `poll_seconds`, the backstop that catches whatever a lost notification or a
    reconnect missed — the outbox, not the notification, is the source of truth (docs/scale-out.md). Nodes share
    nothing but the database. The watcher and the listening connection run only while someone listens: one
    query and one connection per node, not per listener.
    """

    def __init__(
        self, poll_seconds: float = 1.0, keepalive_seconds: float = 15.0, listen_dsn: str | None = None
    ) -> None:
        self.poll_seconds = poll_seconds
        self.listen_dsn = listen_dsn
        # Idle streams get a comment this often: proxies and load balancers drop silent connections (~60 s).
        self.keepalive_seconds = keepalive_seconds
        self._waiters: dict[asyncio.Event, Interest | None] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._newest_seen: int | None = None
        # Open live-event streams by user (the per-user cap, api/routers/events.py), and whether the node is
        # shutting down (streams then end at once instead of holding the shutdown up).
        self.streams: collections.Counter[int] = collections.Counter()
        self.closed = False

    def close(self) -> None:
        """Shutting down: every stream ends at its next wake-up, which is now."""
        self.closed = True
        self.published()

    def published(self, events: Published | None = None) -> None:
        """Outbox rows may have been committed. `events`: the ones a commit wrote, when the committer knows them
        (the batch writer does): a listener subscribed with an interest is then woken only for an event it wants.
        None (a settings change, another node's commit, the watcher's poll): every listener looks."""
        for waiter, interest in self._waiters.items():
            if events is None or interest is None or any(interest(type_, payload) for type_, payload in events):
                waiter.set()

    def subscribe(
        self, sessions: async_sessionmaker[AsyncSession] | None = None, interest: Interest | None = None
    ) -> asyncio.Event:
        """A waiter set when outbox rows may have been committed; with `interest`, not for the batch writer's
        commits that wrote no event it wants (the notification dispatcher acts on voicemails and missed calls, not
        on the two or three events of every answered call: each wake-up was a read of the outbox)."""
        waiter = asyncio.Event()
        self._waiters[waiter] = interest
        if sessions is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch(sessions), name="event-hub-watcher")
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.pop(waiter, None)
        if not self._waiters and self._watcher is not None:
            self._watcher.cancel()
            self._stopping.add(self._watcher)  # may be in a query yet: `stop` waits for it
            self._watcher.add_done_callback(self._stopping.discard)
            self._watcher = None

    async def stop(self) -> None:
        """The watcher ended, a query under way included: before the database it reads is closed."""
        watchers = [*self._stopping, *([self._watcher] if self._watcher is not None else [])]
        self._watcher = None
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    @staticmethod
    async def wait(waiter: asyncio.Event, seconds: float) -> bool:
        """True when woken, False when `seconds` passed first."""
        try:
            async with asyncio.timeout(seconds):
                await waiter.wait()
        except TimeoutError:
            return False
        return True

    @property
    def listeners(self) -> int:
        return len(self._waiters)

    async def _listen(self, dsn: str) -> None:
        while True:
            try:
                await listen(dsn, self.published)
            except Exception:  # the database is away: the poll covers until the next attempt
                logging.getLogger(__name__).warning("event listener lost the database", exc_info=True)
            await asyncio.sleep(self.poll_seconds)

    async def _watch(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        listening = None
        if self.listen_dsn is not None:
            listening = asyncio.get_running_loop().create_task(self._listen(self.listen_dsn), name="event-listener")
        try:
            await self._poll(sessions)
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    async def _poll(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        # On the call path's cheap reads (store/db.py: on a SQLite file one statement on the loop, on a connection
        # of the watcher's own; elsewhere a pooled connection, no ORM session): the notification dispatcher listens
        # for as long as the exchange runs, so this runs every `poll_seconds` whether calls flow or not.
        reads: CallPathReads | None = None
        try:
            while self._waiters:
                try:
                    if reads is None:
                        reads = CallPathReads(sessions.kw["bind"])
                    rows = await reads.rows(NEWEST_EVENT)
                    newest = (rows[0][0] if rows else None) or 0
                except Exception:  # a database hiccup must not end live events; the next poll retries
                    logging.getLogger(__name__).warning("event watcher could not read the outbox", exc_info=True)
                else:
                    # The first poll wakes everyone too: a row may have landed between a listener's read and now.
                    if self._newest_seen is None or newest > self._newest_seen:
                        self.published()
                    self._newest_seen = newest
                await asyncio.sleep(self.poll_seconds)
        finally:
            if reads is not None:
                reads.close()


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: Hasher
    # The settings routes' session lookup without an ORM session (api/deps.py `settings_caller`; opened by the
    # first one, closed by the app's lifespan), and their one-statement writes (`store.db.autocommit_engine`).
    reads: CallPathReads | None = None
    autocommit: AsyncEngine | None = None
    # On a SQLite file, the settings writes' own connection that commits on the loop when the lock is free
    # (store/service_settings.py `LoopWriter`); opened with `reads`, closed by the lifespan. False: none to open.
    settings_writer: LoopWriter | bool | None = None
    events: EventHub = field(default_factory=EventHub)
    # Set by the app's lifespan once the database is migrated: `hipper serve` starts the SIP side first, and what
    # it reads through `reads` (server.py `follow_device_events`) waits for this, as a request waits for the start.
    migrated: asyncio.Event = field(default_factory=asyncio.Event)
    unknown_logins: UnknownNameFailures = field(default_factory=UnknownNameFailures)
    # What the process runs beside the API on the same database (`hipper serve`: call processing, the SIP stack,
    # their background tasks), stopped by `close` — the app's lifespan — last added first, before the database is
    # closed. Stopped after it, their last writes (a call's log, the node leaving) opened pooled connections on the
    # disposed engine that nobody closed: aiosqlite threads outliving the event loop.
    beside: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def stop_before_close(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Have `close` run `stop` first (after what was added later): what runs beside the API and uses the
        database."""
        self.beside.append(stop)

    async def close(self) -> None:
        """Stop what runs beside the API, then close the database: the settings reads and writer, then the
        engine's pool. Idempotent: the app's lifespan calls it, and `hipper serve` again for when the lifespan
        never ran to its end (a failed start). What a later request opens again is opened afresh."""
        try:
            while self.beside:
                stop = self.beside.pop()
                try:
                    await stop()
                except Exception:  # the rest is still stopped and the database still closed
                    logging.getLogger(__name__).exception("shutdown.stop_failed")
        finally:
            await self.events.stop()
            reads, self.reads = self.reads, None  # opened by the first settings request (api/deps.py `reads_of`)
            if reads is not None:
                reads.close()
            writer, self.settings_writer = self.settings_writer, None  # likewise (`writer_of`)
            if isinstance(writer, LoopWriter):
                await writer.close()
            await self.engine.dispose()
