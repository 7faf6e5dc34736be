"""What the running exchange shares with every request: configuration, database, hashing, event hub."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hipper.api.login_guard import UnknownNameFailures
from hipper.config import Settings
from hipper.passwords import Hasher


class EventHub:
    """Wakes live-event listeners when new outbox rows may exist; listeners then read the rows themselves.

    Two things wake them: a commit on this node (`published`, immediate), and a watcher that polls the newest
    event id every `poll_seconds`, so rows committed by another node (or by the SIP side in another process)
    arrive too — nodes share nothing but the database (DESIGN.md "Beyond one node"). The watcher runs only
    while someone listens, and it is one query per node, not one per listener.
    """

    def __init__(self, poll_seconds: float = 1.0, keepalive_seconds: float = 15.0) -> None:
        self.poll_seconds = poll_seconds
        # Idle streams get a comment this often: proxies and load balancers drop silent connections (~60 s).
        self.keepalive_seconds = keepalive_seconds
        self._waiters: set[asyncio.Event] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._newest_seen: int | None = None
        # Open live-event streams by user (the per-user cap, api/routers/events.py), and whether the node is
        # shutting down (streams then end at once instead of holding the shutdown up).
        self.streams: collections.Counter[int] = collections.Counter()
        self.closed = False

    def close(self) -> None:
        """Shutting down: every stream ends at its next wake-up, which is now."""
        self.closed = True
        self.published()

    def published(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def subscribe(self, sessions: async_sessionmaker[AsyncSession] | None = None) -> asyncio.Event:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        if sessions is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch(sessions), name="event-hub-watcher")
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)
        if not self._waiters and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

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

    async def _watch(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        # Imported here: the store's models import nothing from the API, and the API state stays light.
        from hipper.store.models import Event

        while self._waiters:
            try:
                async with sessions() as session:
                    newest = (await session.execute(select(func.max(Event.id)))).scalar_one_or_none() or 0
            except Exception:  # a database hiccup must not end live events; the next poll retries
                logging.getLogger(__name__).warning("event watcher could not read the outbox", exc_info=True)
            else:
                # The first poll wakes everyone too: a row may have landed between a listener's read and now.
                if self._newest_seen is None or newest > self._newest_seen:
                    self.published()
                self._newest_seen = newest
            await asyncio.sleep(self.poll_seconds)


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: Hasher
    # For requests that only read, in one statement (hipper.store.db.read_session_factory); None: `sessions`.
    read_sessions: async_sessionmaker[AsyncSession] | None = None
    events: EventHub = field(default_factory=EventHub)
    unknown_logins: UnknownNameFailures = field(default_factory=UnknownNameFailures)
