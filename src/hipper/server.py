"""`hipper serve`: one process, one event loop, hosting the HTTP API and app, and the SIP stack (registrar)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import socket
import ssl
from datetime import timedelta

import uvicorn
from fastapi import FastAPI
from sqlalchemy import bindparam, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper import logs
from hipper.api.app import attach_calls, create_app
from hipper.api.connections import ConnectionGuard, guarded_protocol
from hipper.api.deps import reads_of
from hipper.api.state import AppState
from hipper.apps.node import start_call_processing
from hipper.apps.voicemail import sweep_spool
from hipper.config import Settings
from hipper.offload import run_cpu
from hipper.sip.digest import Authenticator
from hipper.sip.guard import AuthGuard, GuardPolicy, SourceLimit
from hipper.sip.proxies import TrustedProxies
from hipper.sip.registrar import Registrar, RegistrarPolicy
from hipper.sip.stack import SipStack
from hipper.sip.transport import Peer, TlsSetupError, server_context
from hipper.store import events, media_sweep
from hipper.store.db import migrate
from hipper.store.models import Event
from hipper.store.registrations import DeviceDirectory, LocationStore

DEVICE_EVENTS = ("device.created", "device.password_reset", "device.deleted")


# The device events after a given id, built once (composing it per wake-up cost as much as running it).
_DEVICE_EVENTS_AFTER = (
    select(Event.id, Event.payload)
    .where(Event.id > bindparam("after"), or_(*(Event.type == literal(type_) for type_ in DEVICE_EVENTS)))
    .order_by(Event.id)
)


async def follow_device_events(state: AppState, directory: DeviceDirectory) -> None:
    """Drop cached device credentials as soon as an administrator's change is committed on this node.

    The outbox hub wakes us after commits; the events name the device's auth username. Other nodes fall back
    to the directory's TTL until cross-node events exist. Every commit wakes this (a settings PUT too), so the
    look goes the cheapest way the database has — the app's own `CallPathReads` (`deps.reads_of`: on SQLite one
    statement on the loop, no ORM session, and no second connection of its own): through an ORM session it was ≈
    a quarter of the server's CPU per settings PUT at 150 PUT/s.

    It waits until the database is migrated (`AppState.migrated`: `serve` migrates before it starts anything; its
    first look at a database without tables ended it for the process's life). The lifespan closes the reads, after
    the hub (`EventHub.close`) has ended this loop.
    """
    await state.migrated.wait()
    reads = reads_of(state)
    last = (await reads.rows(events.NEWEST_EVENT))[0][0] or 0
    waiter = state.events.subscribe(interest=lambda type_, _: type_ in DEVICE_EVENTS)
    try:
        while True:
            await waiter.wait()
            waiter.clear()
            if state.events.closed:
                return  # shutting down
            for event_id, payload in await reads.rows(_DEVICE_EVENTS_AFTER, {"after": last}):
                last = max(last, event_id)
                name = payload.get("auth_username") if isinstance(payload, dict) else None
                if isinstance(name, str):
                    directory.invalidate(name)
                elif isinstance(payload, dict) and isinstance(payload.get("id"), int):
                    directory.invalidate_device(payload["id"])
    finally:
        state.events.unsubscribe(waiter)


def create_sip_stack(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> SipStack:
    """The SIP stack with its registrar; the B2BUA attaches itself later as `stack.handler`."""
    registrar = Registrar(
        Authenticator(
            settings.sip_realm,
            nonce_lifetime=settings.sip_nonce_seconds,
            algorithms=tuple(settings.sip_digest_algorithms),
        ),
        DeviceDirectory(sessions, settings.sip_realm),
        LocationStore(sessions, node=settings.sip_node or socket.gethostname()),
        RegistrarPolicy(min_expires=settings.sip_min_expires, max_expires=settings.sip_max_expires),
        AuthGuard(
            GuardPolicy(
                source_failures=settings.sip_auth_source_failures,
                account_failures=settings.sip_auth_account_failures,
                window=settings.sip_auth_failure_window_seconds,
                ban=settings.sip_auth_ban_seconds,
            )
        ),
        TrustedProxies(frozenset(settings.sip_trusted_proxies)),
    )
    # The trunk and the mobile network carry every caller's traffic from one address, and so does an edge proxy:
    # never rate limited.
    peers = frozenset(
        Peer.parse(address).host for address in (settings.trunk_address, settings.mobile_network_address) if address
    ) | frozenset(settings.sip_trusted_proxies)
    limit = None
    if settings.sip_source_messages_per_second > 0:
        limit = SourceLimit(settings.sip_source_messages_per_second, settings.sip_source_burst, exempt=peers)
    return SipStack(registrar, limit=limit)


def sip_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS server context when SIP over TLS is on; `TlsSetupError` naming the setting when it cannot be."""
    if settings.sip_tls_port is None:
        return None
    if settings.sip_tls_cert_file is None or settings.sip_tls_key_file is None:
        raise TlsSetupError("sip_tls_port is set: sip_tls_cert_file and sip_tls_key_file must name the PEM files")
    return server_context(settings.sip_tls_cert_file, settings.sip_tls_key_file)


# uvicorn waits this long at shutdown for requests still running, then cancels them. Live-event streams are ended
# at once (`ExchangeServer.shutdown`); this bounds everything else.
GRACEFUL_SHUTDOWN_SECONDS = 5


class ExchangeServer(uvicorn.Server):
    """uvicorn's server, ending the live-event streams first when it shuts down (SIGTERM).

    uvicorn stops accepting, then waits for every running request: an event stream never ends by itself, so a
    shutdown waited for each stream's next keepalive check (43 s with 2,000 streams, issue 11).
    """

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.state.events.close()
        await super().shutdown(sockets)


def http_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the exchange: idle and per-source connection limits (api/connections.py)."""
    guard = ConnectionGuard(settings.http_idle_seconds, settings.http_max_connections_per_source)
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        http=guarded_protocol(guard),
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


async def serve(settings: Settings) -> None:
    tls_context = sip_tls_context(settings)  # first: a bad certificate stops the start before anything listens
    # Migrated here, not by the app's lifespan: call processing starts before uvicorn runs the lifespan, and its
    # start reads the database (the outbox for MWI, the node's rows) — on a brand-new data directory it found no
    # tables and `hipper serve` stopped.
    app = create_app(settings, run_migrations=False)
    state: AppState = app.state.hipper
    await migrate(state.engine)
    state.migrated.set()
    server = ExchangeServer(http_config(app, settings), state)
    stack = create_sip_stack(settings, state.sessions)
    stack.transports.set_limits(
        first_message_timeout=settings.sip_tcp_first_message_seconds,
        idle_timeout=settings.sip_tcp_idle_seconds,
        max_connections=settings.sip_tcp_max_connections,
        max_per_source=settings.sip_tcp_max_connections_per_source,
    )
    try:
        await stack.start(
            settings.sip_host,
            settings.sip_port,
            tcp=settings.sip_tcp,
            advertised_host=settings.sip_advertised_host,
            tls_port=settings.sip_tls_port,
            tls_context=tls_context,
        )
        # Stopped by the app's lifespan before it closes the database (`AppState.close`), last added first: call
        # processing (its last writes), then the background tasks, then the SIP stack.
        state.stop_before_close(stack.close)
        app.state.sip = stack
        assert stack.registrar is not None
        background = [
            asyncio.create_task(follow_device_events(state, stack.registrar.devices)),
            asyncio.create_task(purge_registrations(stack.registrar.locations)),
            asyncio.create_task(housekeeping(state)),
        ]
        state.stop_before_close(lambda: stop_tasks(background))
        calls = await start_call_processing(settings, stack, state.sessions)
        state.stop_before_close(calls.close)
        attach_calls(app, calls)  # the API lists and controls the live calls; their events wake its streams
        background.append(asyncio.create_task(freeze_heap_when_started(server)))
        await server.serve()
    finally:
        await state.close()  # done by the lifespan; here too when it never ran to its end (a failed start)


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until they have ended (a database call under way included)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def freeze_heap_when_started(server: uvicorn.Server) -> None:
    """Once everything is started, move the objects that live as long as the process out of the GC's sight.

    A full collection walks every tracked object — ≈ 200,000 after start-up (modules, routes, models, SQLAlchemy's
    mappers), ≈ 40–130 ms on the development machines — and runs every few thousand requests: a pause that
    every request, SIP transaction and RTP stream waiting on the loop shares. `gc.freeze()` leaves those
    start-up objects to reference counting alone (they are never garbage), so later collections only walk what
    was allocated since. Done here and not in the app's lifespan: test processes build many apps, and freezing
    them would keep their cycles forever.
    """
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.1)
    gc.collect()
    gc.freeze()
    tune_collector()


# Allocations (net of frees) between two youngest-generation collections; CPython's default is 700.
GC_YOUNG_THRESHOLD = 5_000


def tune_collector() -> None:
    """Collect the youngest generation every 5,000 net allocations instead of every 700.

    A call keeps its SIP transactions for up to 32 s after it ends (RFC 3261 Timers D, J, L): at 40 calls/s that
    is ≈ 150,000 objects alive at any moment. With the default thresholds they were promoted to the oldest
    generation after surviving a few young collections, and full collections of ≈ 100–225 ms each ran every ≈ 300
    calls: ≈ 0.6 ms of CPU per call at 40 calls/s and 0.9 ms at 100/s (`bench.sip.calls`, `gc_cpu_ms_per_call`).
    Collected less often, most of those objects are freed by reference counting before a collection sees them:
    0.27 and 0.39 ms per call, no full collection in 1,200 calls, and the longest pause a ≈ 30 ms middle
    collection instead of a 100–225 ms full one (docs/performance.md, "Call processing", 2026-12-06 22:00).
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


async def purge_registrations(locations: LocationStore, every: float = 600.0) -> None:
    """Expired bindings are ignored by every read; this only keeps phones that went away from piling up."""
    while True:
        await asyncio.sleep(every)
        try:
            await locations.purge_expired()
        except Exception:  # the database may be briefly away; the next round tries again
            logging.getLogger(__name__).exception("sip.purge_failed")


# The first housekeeping round waits this long after the start (at most): not in the start-up rush, yet soon
# enough that an exchange restarted more often than the interval still purges.
HOUSEKEEPING_FIRST_SECONDS = 60.0


async def housekeeping(state: AppState) -> None:
    """Every `housekeeping_interval_seconds`: delete outbox events older than `events_retention_days`, and
    media files left without a row (`housekeeping_once`).

    The purge is batched (store/events.py `purge`), so a backlog never holds one long transaction; several
    nodes doing it at once only find less to do.
    """
    settings = state.settings
    every = settings.housekeeping_interval_seconds
    await asyncio.sleep(min(every, HOUSEKEEPING_FIRST_SECONDS))
    while True:
        await housekeeping_once(state)
        await asyncio.sleep(every)


async def housekeeping_once(state: AppState) -> None:
    """One round: old outbox events, media files no row names (store/media_sweep.py), stale spool files.

    Each part on its own: one failing (the database briefly away) does not skip the others, and the next round
    tries again.
    """
    log = logging.getLogger(__name__)
    settings = state.settings
    try:
        async with state.sessions() as session:
            result = await events.purge(session, timedelta(days=settings.events_retention_days))
    except Exception:
        log.exception("housekeeping.events_failed")
    else:
        if result.deleted:
            log.info("housekeeping.events_purged", extra={"deleted": result.deleted, "through": result.purged_through})
        if result.held_back_by is not None:
            log.warning("housekeeping.events_held_back", extra={"reader": result.held_back_by})
    try:
        async with state.sessions() as session:
            orphans = await media_sweep.sweep_orphans(session, settings.data_dir)
    except Exception:
        log.exception("housekeeping.media_failed")
    else:
        if orphans:
            log.info("housekeeping.media_swept", extra={"orphans": len(orphans)})
    try:  # files only: done even while the database is away
        spooled = await run_cpu(sweep_spool, settings.data_dir)
    except Exception:
        log.exception("housekeeping.spool_failed")
    else:
        if spooled:
            log.info("housekeeping.spool_swept", extra={"removed": spooled})


# Below this many open files a busy node runs out (each phone on TCP/TLS, each HTTP client and stream, each RTP
# socket holds one): worth a warning at start.
ENOUGH_OPEN_FILES = 16384


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (the soft default is often 1024); (soft, hard) after."""
    log = logging.getLogger(__name__)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one (the kernel's nr_open caps it): ask for a million then.
    target = max(soft, 1_048_576) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("server.open_files_not_raised", extra={"soft": soft, "hard": hard, "error": str(exc)})
    if soft < ENOUGH_OPEN_FILES:
        log.warning(
            "server.open_files_low",
            extra={"limit": soft, "hard": hard, "wanted": ENOUGH_OPEN_FILES, "hint": "raise LimitNOFILE / ulimit -Hn"},
        )
    else:
        log.info("server.open_files", extra={"limit": soft})
    return soft, hard


def run(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_json)  # the app's lifespan configures again: harmless
    raise_open_file_limit()
    try:
        sip_tls_context(settings)  # checked before the loop starts: a clear message, not a traceback
    except TlsSetupError as exc:
        raise SystemExit(f"hipper: cannot start SIP over TLS: {exc}") from None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
