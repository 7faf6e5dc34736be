"""Per-user routing snapshots, cached, and dropped by the outbox events that change them (DESIGN "the call model").

Building a snapshot reads every licensed service document, the user's numbers and licences: two statements on the
cheap reads below (`store/user_state.read_user_state`).
The cache keeps it until an event for that user (or one without a user, such as a company's night mode) shows up
in the outbox. Before every use the cache reads the events committed since it last looked (one indexed query), so
a committed change is seen by the very next call on this node and on every other node sharing the database.
Registrations change without events (a phone re-registers every few minutes), so the registered devices are
read fresh for each call — in one statement with the bindings the call then rings (`bindings`), which reuses them
for a moment instead of reading them again — and so is the "on a call" fact (store/presence.py: this node's
memory, and other nodes' calls in the shared store), on the same connection.

The other per-call reads live here too, for the same reason: service documents the call needs besides the
routing snapshot (the recording mode) are cached per user and dropped with the snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
from contextvars import ContextVar
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.domain.routing import UserState
from hipper.domain.services import ServiceSettings
from hipper.engine.directory import Resolved, resolve_other, resolve_user
from hipper.store import service_settings
from hipper.store.db import CallPathReads, Reads
from hipper.store.events import NEWEST_EVENT
from hipper.store.models import Event
from hipper.store.presence import Presence
from hipper.store.registrations import Binding
from hipper.store.user_state import reachable, read_user_state

# Events that change neither what the routing policy reads nor who a dialled number is. "call." is the app's
# call state (call.started / call.ended, written for every call): not routing input.
NEITHER_ROUTING_NOR_NUMBERS = (
    "call.",
    "call_log.",
    "voicemail.",
    "greeting.",
    "contacts.",
    "app_settings.",
    "push_subscription.",
    "passkey.",
    "recording.",
)
# Events that cannot change what the routing policy reads; every other event (also ones added later) invalidates.
UNRELATED_EVENTS = (*NEITHER_ROUTING_NOR_NUMBERS, "directory.", "hunt_group.", "profile.")
# More new events than this since the last look: drop everything rather than read them one by one.
CATCH_UP_LIMIT = 1000
# How long bindings read with a snapshot are handed to the ringing that follows it (same call, microseconds
# later) instead of being read again. A REGISTER on this node drops them at once (`forget_bindings`).
BINDINGS_REUSE_SECONDS = 0.5
# `document` reads at answer time (the recording mode); an outbox look this recent is fresh enough for it: a
# change committed in the last moment of ringing races the answer either way.
DOCUMENT_CATCH_UP_SECONDS = 1.0

# Events that cannot change who a dialled number is or the name it shows (`resolve`); every other event, also
# hunt-group and directory changes that the snapshots ignore, drops the resolved numbers.
NUMBERS_UNCHANGED = (*NEITHER_ROUTING_NOR_NUMBERS, "service.", "device.")
CACHED_KINDS = ("user", "external", "unknown")
# How long after `resolve` looked at the outbox the snapshot read of the same call may skip its own look.
CALL_CATCH_UP_SECONDS = 1.0
# Per task, i.e. per call: when `resolve` last looked at the outbox (loop time), for the `state` that follows.
_CAUGHT_UP: ContextVar[float | None] = ContextVar("snapshots_caught_up", default=None)

_NEW_EVENTS = (
    select(Event.id, Event.user_id, Event.type)
    .where(Event.id > bindparam("after"))
    .order_by(Event.id)
    .limit(CATCH_UP_LIMIT)
)


class SnapshotCache:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, presence: Presence | None = None, max_users: int = 50_000
    ) -> None:
        self.sessions = sessions
        self.presence = presence  # who is on a call; None: nobody ever is (tests of the cache alone)
        self.max_users = max_users
        self._states: dict[int, UserState] = {}
        self._documents: dict[int, dict[str, ServiceSettings]] = {}
        self._bindings: dict[int, tuple[float, list[Binding]]] = {}
        self._resolved: dict[tuple[str, int | None, str], Resolved] = {}
        self._generation = 0  # bumped whenever numbers may have changed (drops `_resolved`)
        # Bumped by every drop of snapshots or documents: one read while a drop happened may predate the change
        # that caused it (the look that saw its event ran while the read waited for the database), so it is used
        # for its call but not cached.
        self._drops = 0
        self.reads = CallPathReads(sessions.kw["bind"])
        self._last_event: int | None = None
        self._caught_up_at = -1e9  # loop time when a look at the outbox last started
        self.loads = 0  # snapshots built from the database (tests and metrics read these)
        self.hits = 0

    async def state(self, user_id: int, now: datetime, *, on_call: bool | None = None) -> UserState | None:
        """The user's routing snapshot; `on_call` None: whether they are on a call is looked up (on any node),
        else it is taken as given (a caller's own snapshot, where it does not matter)."""
        # The reads every call makes go the cheapest way the database has (`CallPathReads`: on SQLite, straight
        # on the loop); an ORM session only when a snapshot has to be built.
        async with self.reads.connect() as reads:
            if not self._caught_up_for_this_call():
                await self._catch_up(reads)
            node_id = self.presence.node_id if self.presence is not None else ""
            bindings, devices, elsewhere = await reachable(reads, user_id, now, node_id)
            if on_call is None:
                on_call = self.presence is not None and await self.presence.on_call(
                    reads, user_id, now, elsewhere=elsewhere
                )
            cached = self._states.get(user_id)
            if cached is None:
                drops = self._drops
                # Built with the same cheap reads (two statements), not an ORM session: store/user_state.py.
                cached = await read_user_state(reads, user_id, devices=devices)
                if cached is None:
                    return None
                self.loads += 1
                if drops == self._drops:
                    if len(self._states) >= self.max_users:
                        self._states.clear()
                    self._states[user_id] = cached
            else:
                self.hits += 1
        self._keep_bindings(user_id, bindings)
        return dataclasses.replace(cached, devices=tuple(devices), on_call=on_call)

    async def resolve(self, dialled: str, company_id: int | None, region: str) -> Resolved:
        """`directory.resolve`, cached until an event that may change who a number is (users, companies,
        departments, call centers); only users and outside numbers are cached. Looks at the outbox
        first; the routing snapshot read next in the same call (`state`) relies on that look instead of taking
        another one."""
        key = (dialled, company_id, region)
        async with self.reads.connect() as reads:
            await self._catch_up(reads)
            _CAUGHT_UP.set(asyncio.get_running_loop().time())
            cached = self._resolved.get(key)
            if cached is not None:
                return cached
            generation = self._generation
            # A user's number (or no number at all) on the same cheap reads; anything else through the session.
            found = await resolve_user(reads, dialled, company_id, region)
        if isinstance(found, Resolved):
            resolved = found
        else:
            async with self.sessions() as session:
                resolved = await resolve_other(session, found)
        # Users and outside numbers only: company and department numbers carry a night mode people flip and
        # expect to apply at once (also when written without an outbox event), hunt groups and call centers
        # their members and state; those are read fresh.
        if resolved.kind in CACHED_KINDS and generation == self._generation:  # nothing invalidated it meanwhile
            if len(self._resolved) >= self.max_users:
                self._resolved.clear()
            self._resolved[key] = resolved
        return resolved

    def _caught_up_for_this_call(self) -> bool:
        """Whether this task (one call) looked at the outbox in `resolve` just now: that look started after the
        call arrived, so it saw every change committed before the call. Used once, then it is gone."""
        mark = _CAUGHT_UP.get()
        if mark is None:
            return False
        _CAUGHT_UP.set(None)
        return asyncio.get_running_loop().time() - mark <= CALL_CATCH_UP_SECONDS

    async def bindings(self, user_id: int, now: datetime) -> list[Binding]:
        """Where the user's devices can be reached: what `state` just read for this user, else read now."""
        kept = self._bindings.pop(user_id, None)
        if kept is not None and asyncio.get_running_loop().time() - kept[0] <= BINDINGS_REUSE_SECONDS:
            return [b for b in kept[1] if b.expires_at > now]
        async with self.reads.connect() as reads:
            bindings = (await reachable(reads, user_id, now)).bindings
        return bindings

    def forget_bindings(self, user_id: int) -> None:
        """A REGISTER on this node changed the user's bindings: the next ringing reads them again."""
        self._bindings.pop(user_id, None)

    def _keep_bindings(self, user_id: int, bindings: list[Binding]) -> None:
        if len(self._bindings) >= self.max_users:
            self._bindings.clear()
        self._bindings[user_id] = (asyncio.get_running_loop().time(), bindings)

    async def document(self, user_id: int, settings_class: type[ServiceSettings]) -> ServiceSettings:
        """One of the user's service documents (any service, licensed or not), cached like the snapshot."""
        recent = asyncio.get_running_loop().time() - self._caught_up_at <= DOCUMENT_CATCH_UP_SECONDS
        documents = self._documents.get(user_id)
        cached = documents.get(settings_class.service) if documents is not None else None
        if cached is not None and recent:
            return cached
        async with self.reads.connect() as reads:
            if cached is not None or self._last_event is None:
                # A cached document is trusted only after a recent look at the outbox. One not cached needs no look
                # first: read now, it holds every change committed before the read, and the events of changes it
                # missed are read by the next look, whenever that is, and drop it then (`_last_event` is known,
                # so the next look starts where the last one ended; none yet: this look sets it).
                await self._catch_up(reads)
                documents = self._documents.get(user_id)
                cached = documents.get(settings_class.service) if documents is not None else None
            if cached is None:
                drops = self._drops
                cached = await service_settings.read(reads, user_id, settings_class)
                if drops == self._drops:
                    documents = self._documents.get(user_id)
                    if documents is None:
                        if len(self._documents) >= self.max_users:
                            self._documents.clear()
                        documents = self._documents[user_id] = {}
                    documents[settings_class.service] = cached
        return cached

    async def _catch_up(self, reads: Reads) -> None:
        started = asyncio.get_running_loop().time()
        await self._read_events(reads)
        self._caught_up_at = max(self._caught_up_at, started)

    async def _max_event(self, reads: Reads) -> int:
        rows = await reads.rows(NEWEST_EVENT)
        return int(rows[0][0] or 0) if rows else 0

    async def _read_events(self, reads: Reads) -> None:
        if self._last_event is None:
            # Nothing is cached yet: whatever happened before now is already in what we will load.
            self._last_event = await self._max_event(reads)
            return
        rows = await reads.rows(_NEW_EVENTS, {"after": self._last_event})
        if len(rows) == CATCH_UP_LIMIT:
            self.clear()
            self._last_event = await self._max_event(reads)
            return
        for event_id, user_id, event_type in rows:
            self._last_event = event_id
            if not event_type.startswith(NUMBERS_UNCHANGED) and self._resolved:
                self._resolved.clear()
                self._generation += 1
            if event_type.startswith(UNRELATED_EVENTS):
                continue
            if user_id is None:
                self.clear()  # a company or group changed: whose snapshot it touches is not named
            else:
                self._drop(user_id)

    def _drop(self, user_id: int) -> None:
        self._drops += 1
        self._states.pop(user_id, None)
        self._documents.pop(user_id, None)

    def close(self) -> None:
        self.reads.close()

    def clear(self) -> None:
        self._drops += 1
        self._states.clear()
        self._documents.clear()
        self._resolved.clear()
        self._generation += 1
