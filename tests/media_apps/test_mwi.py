"""MWI (RFC 3842): a registered phone subscribes to message-summary and gets NOTIFYs with the counts — at once,
after a deposit, after marking heard and after deleting through the API (the exchange follows the outbox)."""

from __future__ import annotations

import asyncio
import string
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hipper.api.app import create_app
from hipper.media.tones import sine
from hipper.media.wavfile import write_wav
from hipper.store import voicemails
from tests.calls.conftest import PASSWORD, Exchange, register, start_sipp
from tests.media_apps.conftest import SCENARIOS
from tests.sip.peers import free_udp_port

pytestmark = pytest.mark.sip


def subscriber(user: str, expectations: list[str]) -> str:
    step = (SCENARIOS / "mwi_notify.xml").read_text()
    notifies = "".join(
        string.Template(step).safe_substitute(regexp=regexp, n=index) for index, regexp in enumerate(expectations)
    )
    text = (SCENARIOS / "mwi_subscriber.xml").read_text()
    return string.Template(text).safe_substitute(user=user, notifies=notifies, steps=", ".join(expectations))


def notify_count(workdir: Path, name: str) -> int:
    return sum(log.read_text(errors="replace").count("NOTIFY sip:") for log in workdir.glob(f"{name}_*_messages.log"))


async def notifies_seen(workdir: Path, name: str, count: int, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while True:  # polled: SIPp's message log is the only sign of what it received
            if notify_count(workdir, name) >= count:
                return
            await asyncio.sleep(0.05)


async def test_subscribe_notify_follows_deposit_heard_and_delete(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    expected = [
        r"Messages-Waiting: no\r\nMessage-Account: sip:202@hipper.test\r\nVoice-Message: 0/0 \(0/0\)",
        r"Messages-Waiting: yes.*Voice-Message: 1/0 ",
        r"Messages-Waiting: no.*Voice-Message: 0/1 ",
        r"Messages-Waiting: no.*Voice-Message: 0/0 ",
    ]
    sipp = await start_sipp(exchange, "mwi", subscriber("bob", expected), "-au", "bob", "-ap", PASSWORD)
    await notifies_seen(exchange.workdir, "mwi", 1)
    wav = exchange.workdir / "m.wav"
    write_wav(wav, sine(440.0, 1.0))
    async with exchange.sessions() as session:
        message = await voicemails.deposit(
            session, exchange.settings.data_dir, exchange.users["bob"], wav.read_bytes(), received_at=datetime.now(UTC)
        )
    await notifies_seen(exchange.workdir, "mwi", 2)
    app = create_app(exchange.settings, run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            login = await http.post("/api/v1/auth/login", json={"username": "bob", "password": "correct horse 1"})
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            heard = await http.patch(f"/api/v1/me/voicemails/{message.id}", json={"heard": True}, headers=headers)
            assert heard.status_code == 200, heard.text
            await notifies_seen(exchange.workdir, "mwi", 3)
            deleted = await http.post("/api/v1/me/voicemails/delete", json={"ids": [message.id]}, headers=headers)
            assert deleted.status_code == 204
    finally:
        await app.state.hipper.engine.dispose()
    await sipp.succeeded(20)  # every NOTIFY matched, then the unsubscribe got 200 and a terminated NOTIFY
    assert not exchange.applications.mwi.subscriptions


async def test_subscribe_needs_credentials_and_the_right_event(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    text = subscriber("bob", [])
    sipp = await start_sipp(exchange, "mwi-wrong", text, "-au", "bob", "-ap", "not-the-password")
    code, _ = await sipp.result(15)
    assert code != 0  # 403 instead of 200
    assert not exchange.applications.mwi.subscriptions
    other = text.replace("Event: message-summary", "Event: presence")
    sipp = await start_sipp(exchange, "mwi-event", other, "-au", "bob", "-ap", PASSWORD)
    code, _ = await sipp.result(15)
    assert code != 0
    log = "".join(p.read_text() for p in exchange.workdir.glob("mwi-event_*_messages.log"))
    assert "489 Bad Event" in log


async def test_unsolicited_notify_to_registered_phones_when_configured(exchange: Exchange) -> None:
    exchange.settings.mwi_unsolicited = True
    await exchange.add_user("bob", "202")
    port = free_udp_port()
    await register(exchange, "bob", port)
    step = (SCENARIOS / "mwi_notify.xml").read_text()
    notifies = string.Template(step).safe_substitute(regexp=r"Messages-Waiting: yes.*Voice-Message: 1/0 ", n=0)
    text = string.Template((SCENARIOS / "mwi_unsolicited.xml").read_text()).safe_substitute(notifies=notifies)
    phone = await start_sipp(exchange, "mwi-phone", text, port=port)
    await asyncio.sleep(0.5)
    wav = exchange.workdir / "m.wav"
    write_wav(wav, sine(440.0, 1.0))
    async with exchange.sessions() as session:
        await voicemails.deposit(
            session, exchange.settings.data_dir, exchange.users["bob"], wav.read_bytes(), received_at=datetime.now(UTC)
        )
    await phone.succeeded(15)


async def test_the_outbox_poll_reads_on_the_call_path_reads(exchange: Exchange) -> None:
    # The poll runs three times a second on every node, idle or not: on a SQLite file its read goes the cheap way
    # (one statement on the loop), not through SQLAlchemy's ORM session (≈ 1 ms of CPU each time).
    from hipper.apps.mwi import _FOLLOWED
    from hipper.store.db import Prepared
    from tests.support.sql import statements_through_sqlalchemy

    reads = exchange.b2bua.snapshots.reads
    if reads._sqlite is None:
        pytest.skip("the cheap reads are pooled connections on this database")
    engine = exchange.sessions.kw["bind"]
    sql = Prepared(_FOLLOWED, engine.dialect).sql
    with statements_through_sqlalchemy(engine) as through_sqlalchemy:
        polled = reads.direct_statements[sql]
        async with asyncio.timeout(10):
            while reads.direct_statements[sql] < polled + 3:  # noqa: ASYNC110 (a counter: three polls seen)
                await asyncio.sleep(0.05)
    assert not [s for s in through_sqlalchemy if "voicemail" in s or "events.type IN" in s], through_sqlalchemy


def test_the_cheap_reads_refuse_a_statement_they_cannot_run() -> None:
    # An expanding IN (a Python list) is rendered by SQLAlchemy at each execution; compiled once for the cheap
    # reads it reached SQLite as "[POSTCOMPILE_type_1]" and failed every time. Refused where it is prepared.
    from sqlalchemy import select
    from sqlalchemy.dialects import sqlite

    from hipper.store.db import Prepared
    from hipper.store.models import Event

    with pytest.raises(ValueError, match="expanding IN"):
        Prepared(select(Event.id).where(Event.type.in_(["a", "b"])), sqlite.dialect())
