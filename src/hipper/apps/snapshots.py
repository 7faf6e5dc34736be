"""Per-user routing snapshots, cached, and dropped by the outbox events that change them (DESIGN "the call model").

Building a snapshot reads every licensed service document, the user's numbers and licences: about twenty queries.
The cache keeps it until an event for that user (or one without a user, such as a company's night mode) shows up
in the outbox. Before every use the cache reads the events committed since it last looked (one indexed query), so
a committed change is seen by the very next call on this node and on every other node sharing the database.
Registrations change without events (a phone re-registers every few minutes), so the registered devices and the
"on a call" fact are read fresh for each call.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.domain.routing import UserState
from hipper.store.models import Event, User
from hipper.store.user_state import load_user_state, registered_devices

# Events that cannot change what the routing policy reads; every other event (also ones added later) invalidates.
UNRELATED_EVENTS = (
    "call_log.",
    "voicemail.",
    "greeting.",
    "contacts.",
    "app_settings.",
    "push_subscription.",
    "passkey.",
    "directory.",
    "hunt_group.",
    "profile.",
)
# More new events than this since the last look: drop everything rather than read them one by one.
CATCH_UP_LIMIT = 1000


class SnapshotCache:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_users: int = 50_000) -> None:
        self.sessions = sessions
        self.max_users = max_users
        self._states: dict[int, UserState] = {}
        self._last_event: int | None = None
        self.loads = 0  # snapshots built from the database (tests and metrics read these)
        self.hits = 0

    async def state(self, user_id: int, now: datetime, *, on_call: bool) -> UserState | None:
        async with self.sessions() as session:
            await self._catch_up(session)
            cached = self._states.get(user_id)
            if cached is None:
                user = await session.get(User, user_id)
                if user is None:
                    return None
                cached = await load_user_state(session, user, now)
                self.loads += 1
                if len(self._states) >= self.max_users:
                    self._states.clear()
                self._states[user_id] = cached
                return dataclasses.replace(cached, on_call=on_call)
            self.hits += 1
            devices = tuple(await registered_devices(session, user_id, now))
        return dataclasses.replace(cached, devices=devices, on_call=on_call)

    async def _catch_up(self, session: AsyncSession) -> None:
        if self._last_event is None:
            # Nothing is cached yet: whatever happened before now is already in what we will load.
            self._last_event = int((await session.execute(select(func.max(Event.id)))).scalar() or 0)
            return
        rows = (
            await session.execute(
                select(Event.id, Event.user_id, Event.type)
                .where(Event.id > self._last_event)
                .order_by(Event.id)
                .limit(CATCH_UP_LIMIT)
            )
        ).all()
        if len(rows) == CATCH_UP_LIMIT:
            self._states.clear()
            self._last_event = int((await session.execute(select(func.max(Event.id)))).scalar() or 0)
            return
        for event_id, user_id, event_type in rows:
            self._last_event = event_id
            if event_type.startswith(UNRELATED_EVENTS):
                continue
            if user_id is None:
                self._states.clear()  # a company or group changed: whose snapshot it touches is not named
            else:
                self._states.pop(user_id, None)

    def clear(self) -> None:
        self._states.clear()
