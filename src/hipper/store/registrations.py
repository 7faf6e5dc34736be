"""User location (RFC 3261 §10) in the `registrations` table, and the device credentials the registrar checks.

Registrations live in the database so that the API and other nodes can read them; expired rows are ignored
by every read and purged lazily. Device credentials are cached in memory (the REGISTER path would otherwise
query once per refresh of every phone): entries expire after `ttl` seconds and `invalidate()` drops them at
once when an administrator changes a device (call it from the outbox consumer on `sip_device.*` events).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.domain.moments import aware
from hipper.sip.digest import Credentials
from hipper.sip.transport import Peer
from hipper.store.models import Registration, SipDevice


@dataclass(frozen=True)
class Device:
    id: int
    user_id: int
    credentials: Credentials


@dataclass(frozen=True)
class Binding:
    """One registered contact of a device: where to send requests (`source`, the NAT-facing address)."""

    device_id: int
    user_id: int
    contact: str
    source: str  # "udp:203.0.113.5:5060": where the REGISTER really came from
    expires_at: datetime
    call_id: str
    cseq: int
    user_agent: str = ""
    node: str = ""

    @property
    def peer(self) -> Peer:
        """Where requests to this device go: the address and connection it registered from (NAT, RFC 3581)."""
        return Peer.parse(self.source)

    def expires_in(self, now: datetime) -> int:
        return max(0, int((self.expires_at - now).total_seconds()))


def _binding(row: Registration) -> Binding:
    return Binding(
        device_id=row.device_id,
        user_id=row.user_id,
        contact=row.contact,
        source=row.source,
        expires_at=aware(row.expires_at),
        call_id=row.call_id,
        cseq=row.cseq,
        user_agent=row.user_agent,
        node=row.node,
    )


@dataclass(frozen=True)
class BindingChange:
    """What one REGISTER changes (RFC 3261 §10.3 step 8)."""

    upserts: list[Binding]
    removals: list[str]
    remove_all: bool = False


class DeviceDirectory:
    """auth_username → device credentials, cached (also the misses, so a scanner cannot hammer the DB)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], realm: str, *, ttl: float = 60.0, miss_ttl: float = 5.0
    ) -> None:
        self.sessions = sessions
        self.realm = realm
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self._cache: dict[str, tuple[float, Device | None]] = {}
        self._inflight: dict[str, asyncio.Future[Device | None]] = {}
        self.queries = 0  # how often the database was asked; tests and benchmarks read it

    async def lookup(self, auth_username: str) -> Device | None:
        now = asyncio.get_running_loop().time()
        cached = self._cache.get(auth_username)
        if cached is not None and cached[0] > now:
            return cached[1]
        # Phones re-register in bursts (after a restart, all at once): one query per name, however many wait.
        pending = self._inflight.get(auth_username)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Device | None] = asyncio.get_running_loop().create_future()
        self._inflight[auth_username] = future
        try:
            device = await self._load(auth_username, now)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not logged as "never retrieved"
            raise
        else:
            future.set_result(device)
            return device
        finally:
            del self._inflight[auth_username]

    async def _load(self, auth_username: str, now: float) -> Device | None:
        self.queries += 1
        async with self.sessions() as session:
            row = (
                await session.execute(select(SipDevice).where(SipDevice.auth_username == auth_username))
            ).scalar_one_or_none()
        device = None
        if row is not None and row.realm == self.realm:
            device = Device(
                id=row.id,
                user_id=row.user_id,
                credentials=Credentials(row.auth_username, row.realm, row.ha1_md5.lower(), row.ha1_sha256.lower()),
            )
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[auth_username] = (now + (self.ttl if device else self.miss_ttl), device)
        return device

    def invalidate(self, auth_username: str | None = None) -> None:
        if auth_username is None:
            self._cache.clear()
        else:
            self._cache.pop(auth_username, None)

    def invalidate_device(self, device_id: int) -> None:
        """For the outbox events `device.password_reset` / `device.deleted`, which name the device by id."""
        for name, (_, device) in list(self._cache.items()):
            if device is not None and device.id == device_id:
                del self._cache[name]


class LocationStore:
    """Reads and writes the bindings of devices; every read ignores expired rows."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], node: str = "") -> None:
        self.sessions = sessions
        self.node = node
        bind = sessions.kw.get("bind")
        # SQLite has one writer; a read-then-write transaction that loses the race gets "database is locked"
        # at once (WAL cannot upgrade a stale snapshot). Queue this node's writers instead; PostgreSQL needs not.
        sqlite = bind is not None and bind.dialect.name == "sqlite"
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if sqlite else None
        # Called with the user id after every committed change (call processing drops bindings it holds).
        self.on_change: list[Callable[[int], None]] = []

    async def for_device(self, device_id: int, now: datetime | None = None) -> list[Binding]:
        now = now or datetime.now(UTC)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Registration)
                    .where(Registration.device_id == device_id, Registration.expires_at > now)
                    .order_by(Registration.id)
                )
            ).scalars()
            return [_binding(row) for row in rows]

    async def for_user(self, user_id: int, now: datetime | None = None) -> list[Binding]:
        """Where a user's devices can be reached now (what the B2BUA forks to)."""
        now = now or datetime.now(UTC)
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Registration)
                    .where(Registration.user_id == user_id, Registration.expires_at > now)
                    .order_by(Registration.id)
                )
            ).scalars()
            return [_binding(row) for row in rows]

    async def change(
        self, device: Device, decide: Callable[[list[Binding]], BindingChange], now: datetime | None = None
    ) -> list[Binding]:
        """Read the device's bindings, let `decide` say what changes, apply it: one transaction, no re-read.

        `decide` sees only unexpired bindings and may raise to abort (the registrar's 423/500/403 cases).
        """
        now = now or datetime.now(UTC)
        for attempt in range(2):
            try:
                if self._write_lock is None:
                    async with self.sessions() as session, session.begin():
                        bindings = await self._change(session, device, decide, now)
                else:
                    async with self._write_lock, self.sessions() as session, session.begin():
                        bindings = await self._change(session, device, decide, now)
                for listener in self.on_change:
                    listener(device.user_id)
                return bindings
            except IntegrityError:
                # Two REGISTERs of one device raced to insert the same contact; the second try updates it.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _change(
        self,
        session: AsyncSession,
        device: Device,
        decide: Callable[[list[Binding]], BindingChange],
        now: datetime,
    ) -> list[Binding]:
        rows = list(
            (
                await session.execute(
                    select(Registration).where(Registration.device_id == device.id).order_by(Registration.id)
                )
            ).scalars()
        )
        live = [row for row in rows if aware(row.expires_at) > now]
        live_ids = {id(row) for row in live}
        wanted = decide([_binding(row) for row in live])
        # Expired rows go too: a lazy purge keeps the table from growing with phones that went away.
        removed = set(wanted.removals)
        keep: dict[str, Registration] = {}
        for row in rows:
            if wanted.remove_all or id(row) not in live_ids or row.contact in removed:
                await session.delete(row)
            else:
                keep[row.contact] = row
        for binding in wanted.upserts:
            found = keep.get(binding.contact)
            if found is None:
                found = Registration(device_id=device.id, user_id=device.user_id, contact=binding.contact)
                session.add(found)
                keep[binding.contact] = found
            row = found
            row.source = binding.source
            row.call_id = binding.call_id
            row.cseq = binding.cseq
            row.user_agent = binding.user_agent[:200]
            row.node = self.node
            row.expires_at = binding.expires_at
        await session.flush()
        return [_binding(row) for row in sorted(keep.values(), key=lambda row: row.id)]

    async def purge_expired(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            result = await session.execute(delete(Registration).where(Registration.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)


def expiry(now: datetime, seconds: int) -> datetime:
    return now + timedelta(seconds=seconds)
