"""Lockouts hold under parallel guessing (issue 11, critical 4): the failure counters are claimed atomically.

Before, a guess read "not locked", spent the hash and then wrote the count: guesses sent together all read the
old count, so 59 parallel wrong passwords and then the right one got in (limit 5), and 200 parallel PIN
step-ups found a PIN. Each test fires many guesses at once at a real exchange process over TCP (SQLite and
PostgreSQL) and asserts the limit holds exactly: `limit` guesses are checked, every other one is refused as
locked, the right secret sent after them is refused too, and the exchange still serves other users.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from hipper.apps.voicemail_menu import _login
from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.store.db import create_engine, session_factory
from hipper.store.models import User
from tests.support.exchange_process import PASSWORD, PIN, exchange_process, seed_users

LIMIT = 5
GUESSES = 60


def pool(connections: int) -> httpx.Limits:
    """Connections idle longer than uvicorn's keep-alive (5 s; the guesses take a while on a loaded machine) are
    not reused: the server may be closing one just as a request goes out on it, and a POST is not retried."""
    return httpx.Limits(max_connections=connections, keepalive_expiry=1)


async def test_parallel_wrong_passwords_lock_the_account_at_the_limit(tmp_path: Path, database_url: str) -> None:
    async with (
        exchange_process(tmp_path, database_url, ["victim", "bystander"], login_attempts=str(LIMIT)) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=60, limits=pool(GUESSES)) as http,
    ):
        answers = await asyncio.gather(
            *(
                http.post("/api/v1/auth/login", json={"username": "victim", "password": f"guess-{n}-x"})
                for n in range(GUESSES)
            )
        )
        codes = [answer.status_code for answer in answers]
        assert codes.count(401) == LIMIT, codes  # exactly `limit` guesses were checked
        assert codes.count(429) == GUESSES - LIMIT, codes
        # The right password after them does not get in (before, lost updates left the count at one or two).
        right = await http.post("/api/v1/auth/login", json={"username": "victim", "password": PASSWORD})
        assert right.status_code == 429
        # The service still works for everyone else.
        assert (await http.post("/api/v1/auth/login", json={"username": "bystander", "password": PASSWORD})).is_success


async def test_parallel_wrong_pins_lock_the_step_up_at_the_limit(tmp_path: Path, database_url: str) -> None:
    async with (
        exchange_process(tmp_path, database_url, ["victim"], pin_attempts=str(LIMIT)) as exchange,
        httpx.AsyncClient(base_url=exchange.url, timeout=60, limits=pool(100)) as http,
    ):
        token = await exchange.login(http, "victim")
        headers = {"Authorization": f"Bearer {token}"}
        guesses = [f"{n:04d}" for n in range(200) if f"{n:04d}" != PIN]
        answers = await asyncio.gather(
            *(http.post("/api/v1/auth/step-up", json={"pin": pin}, headers=headers) for pin in guesses)
        )
        codes = [answer.status_code for answer in answers]
        assert codes.count(403) == LIMIT, codes
        assert codes.count(429) == len(codes) - LIMIT, codes
        assert (await http.post("/api/v1/auth/step-up", json={"pin": PIN}, headers=headers)).status_code == 429
        # The session itself still works (the lock is on the step-up, not on the account).
        assert (await http.get("/api/v1/me", headers=headers)).status_code == 200


async def test_parallel_wrong_voicemail_pins_lock_the_mailbox_at_the_limit(tmp_path: Path, database_url: str) -> None:
    """The voicemail-by-phone login (apps/voicemail_menu.py `_login`, what each call runs after its digits), from
    16 calls at once against the database; over SIP each of those is one call's PIN entry."""
    ids = await seed_users(database_url, ["victim"], licences=["full"])
    engine = create_engine(database_url)
    settings = Settings(data_dir=tmp_path, database_url=database_url, pin_attempts=LIMIT, default_region="NL")
    # What `_login` reads of its call: the settings and the database sessions.
    call: Any = SimpleNamespace(settings=settings, b2bua=SimpleNamespace(sessions=session_factory(engine)))
    hasher = Hasher(1, 8192)
    try:
        mailbox = "+31201234101"
        results = await asyncio.gather(*(_login(call, hasher, mailbox, f"99{n:02d}") for n in range(15)))
        assert results == [None] * 15
        async with call.b2bua.sessions() as session:
            user = await session.get(User, ids["victim"])
            assert user is not None and user.pin_locked_until is not None
            assert user.failed_pins == LIMIT  # exactly `limit` PINs were checked: every other call was refused
        # The right PIN after them does not open the mailbox (before, lost updates left the count at one or two).
        assert await _login(call, hasher, mailbox, PIN) is None
    finally:
        await engine.dispose()
