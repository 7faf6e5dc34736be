"""A real exchange on a free localhost port (uvicorn in a thread, SQLite in a temp dir) for browser tests.

Shared by the browser tests and bench/web/screens.py. Users are written with `hipper.store.admin` through their
own engine on the same SQLite file, the way the CLI would, so the server sees them on the next request.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
import time
import wave
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.api.app import attach_calls, create_app
from hipper.apps.node import start_call_processing
from hipper.config import Settings
from hipper.domain.licences import expand
from hipper.engine.b2bua import B2bua
from hipper.passwords import Hasher
from hipper.server import create_sip_stack
from hipper.sip.stack import SipStack
from hipper.store import admin, call_logs, devices, voicemails
from hipper.store.db import create_engine, migrate, session_factory
from hipper.store.models import Company
from hipper.store.users import by_username
from tests.support.ports import server_port

T = TypeVar("T")

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024}
PASSWORD = "correct horse 1"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def run_apart(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to the end on its own loop in its own thread: Playwright's sync API already runs a loop
    in the test's thread, so asyncio.run there is refused."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(work)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=target, name="exchange-admin")
    thread.start()
    thread.join(timeout=60)
    if failure:
        raise failure[0]


def free_port() -> int:
    return server_port()


@dataclass
class LiveServer:
    data_dir: Path
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _company_id: int | None = None
    # With call processing (the SIP stack and B2BUA on a free port, as `hipper serve` runs them), POST /me/calls
    # really places calls; without it the API answers 409 "not running" there and the app falls back to tel: links.
    call_processing: bool = False
    extra_settings: dict[str, Any] | None = None
    # With call processing: the server's own event loop, SIP stack and B2BUA (SIPp phones are run on that loop).
    loop: asyncio.AbstractEventLoop | None = None
    sip: SipStack | None = None
    b2bua: B2bua | None = None
    sip_settings: Settings | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, **FAST_ARGON2, **(self.extra_settings or {}))  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        run_apart(self._migrate())
        self.port = free_port()
        app = create_app(self.settings, run_migrations=False)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        server = self._server

        def run() -> None:
            if self.call_processing:
                asyncio.run(self._serve_with_calls(app, server))
            else:
                server.run()

        self._thread = threading.Thread(target=run, name="live-exchange", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the exchange did not start")
            time.sleep(0.05)

    async def _serve_with_calls(self, app: Any, server: uvicorn.Server) -> None:
        """What hipper.server.serve does, on a free SIP port: the B2BUA on app.state.calls for /me/calls."""
        settings = Settings(data_dir=self.data_dir, sip_port=free_port(), **FAST_ARGON2, **(self.extra_settings or {}))  # type: ignore[arg-type]
        state = app.state.hipper
        stack = create_sip_stack(settings, state.sessions)
        try:
            await stack.start(settings.sip_host, settings.sip_port)
            # As `hipper serve`: stopped by the app's lifespan before it closes the database (`AppState.close`).
            state.stop_before_close(stack.close)
            calls = await start_call_processing(settings, stack, state.sessions)
            state.stop_before_close(calls.close)
            attach_calls(app, calls)
            self.loop, self.sip, self.b2bua, self.sip_settings = asyncio.get_running_loop(), stack, calls, settings
            self.sessions = state.sessions
            await server.serve()
        finally:
            await state.close()  # done by the lifespan; here too when it never ran to its end

    def run(self, work: Coroutine[Any, Any, T], limit: float = 60.0) -> T:
        """Run a coroutine on the exchange's own loop (with call processing) and wait for its result: what runs
        beside the calls (SIPp phones, reading the B2BUA) runs where the calls do."""
        assert self.loop is not None, "the exchange runs no call processing"
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout=limit)

    def add_device(self, username: str, auth_username: str, password: str, realm: str) -> None:
        """A SIP device of the user (a desk phone that registers with this digest username and password)."""
        run_apart(self._add_device(username, auth_username, password, realm))

    async def _add_device(self, username: str, auth_username: str, password: str, realm: str) -> None:
        engine = create_engine(self.settings.resolved_database_url())
        try:
            async with session_factory(engine)() as session:
                user = await by_username(session, username)
                assert user is not None
                await devices.create_device(session, user, auth_username=auth_username, password=password, realm=realm)
                await session.commit()
        finally:
            await engine.dispose()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _migrate(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.settings.resolved_database_url())
        await migrate(engine)
        await engine.dispose()

    def add_user(
        self, username: str, *, licences: list[str] | None = None, pin: str | None = None, **fields: Any
    ) -> None:
        run_apart(self._add_user(username, licences or ["full"], pin, fields))

    async def _add_user(self, username: str, licences: list[str], pin: str | None, fields: dict[str, Any]) -> None:
        engine = create_engine(self.settings.resolved_database_url())
        hasher = Hasher(**{key.removeprefix("argon2_"): value for key, value in FAST_ARGON2.items()})
        try:
            async with session_factory(engine)() as session:
                if self._company_id is None:
                    created = await admin.create_company(session, "Acme BV", "+31201234000")
                    self._company_id = created.id
                company = await session.get(Company, self._company_id)
                user = await admin.create_user(
                    session, hasher, username=username, password=PASSWORD, company=company, licences=licences, **fields
                )
                if pin is not None:
                    user.pin_hash = await hasher.hash(pin)
                await session.commit()
        finally:
            await engine.dispose()

    def set_licences(self, username: str, licences: list[str]) -> None:
        """What an administrator does when assigning licences (the app sees it after "restart app")."""
        run_apart(self._set_licences(username, licences))

    async def _set_licences(self, username: str, licences: list[str]) -> None:
        engine = create_engine(self.settings.resolved_database_url())
        try:
            async with session_factory(engine)() as session:
                user = await by_username(session, username)
                assert user is not None
                user.licences = sorted(expand(licences))
                await session.commit()
        finally:
            await engine.dispose()

    def set_company_night_mode(self, on: bool) -> None:
        """What the administrator does with the company's night switch."""
        run_apart(self._set_company_night_mode(on))

    async def _set_company_night_mode(self, on: bool) -> None:
        engine = create_engine(self.settings.resolved_database_url())
        try:
            async with session_factory(engine)() as session:
                company = await session.get(Company, self._company_id)
                assert company is not None
                await admin.set_night_mode(session, company, on)
                await session.commit()
        finally:
            await engine.dispose()

    def add_history(self, username: str) -> None:
        """A few received, placed and missed calls and one new voicemail, as call processing would leave them."""
        run_apart(self._add_history(username))

    async def _add_history(self, username: str) -> None:
        engine = create_engine(self.settings.resolved_database_url())
        now = datetime.now(UTC)
        try:
            async with session_factory(engine)() as session:
                user = await by_username(session, username)
                assert user is not None
                calls = [
                    ("missed", "+31612345678", "Manager", 5),
                    ("received", "+31301234567", "Receptie", 45),
                    ("placed", "+31201234102", "Bram Jansen", 90),
                ]
                for kind, number, name, minutes_ago in calls:
                    started = now - timedelta(minutes=minutes_ago)
                    await call_logs.record_call(
                        session,
                        user.id,
                        kind=kind,  # type: ignore[arg-type]
                        started_at=started,
                        remote_number=number,
                        remote_name=name,
                        answered_at=None if kind == "missed" else started + timedelta(seconds=5),
                        ended_at=started + timedelta(seconds=65),
                        outcome="no_answer" if kind == "missed" else "answered",
                    )
                await session.commit()
                user_id = user.id
            async with session_factory(engine)() as session:
                await voicemails.deposit(
                    session,
                    self.data_dir,
                    user_id,
                    tone_wav(1.0),
                    received_at=now - timedelta(minutes=5),
                    duration_ms=1000,
                    caller_number="+31612345678",
                    caller_name="Manager",
                )
        finally:
            await engine.dispose()


def tone_wav(seconds: float, rate: int = 8000) -> bytes:
    """A 440 Hz tone as 8 kHz mono 16-bit WAV: a message the player can really play."""
    frames = bytearray()
    for n in range(int(seconds * rate)):
        frames += int(8000 * math.sin(2 * math.pi * 440 * n / rate)).to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(frames))
    return out.getvalue()
