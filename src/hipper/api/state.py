"""What the running exchange shares with every request: configuration, database, hashing, event hub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hipper.config import Settings
from hipper.passwords import Hasher


class EventHub:
    """Wakes live-event listeners after a commit wrote outbox rows; listeners then read the rows."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def published(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def subscribe(self) -> asyncio.Event:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: Hasher
    events: EventHub = field(default_factory=EventHub)
