"""Notifications from real calls (SPEC H3, L, M4): a SIPp caller leaves a voicemail through the exchange with a
test tone on its RTP, or hangs up while the phone rings; a real aiosmtpd server and the local push service (which
decrypts per RFC 8291) receive what the outbox dispatcher sends, each honouring the user's toggles.

The dispatcher runs as `hipper serve` runs it next to call processing: following the outbox, woken by the event
hub's watcher (the call path commits without telling the hub, like another node would).
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from hipper.api.state import EventHub
from hipper.domain.app_settings import AppSettings, PushNotifications
from hipper.domain.services import Voicemail
from hipper.media.g711 import SAMPLE_RATE
from hipper.notify import Notifications
from hipper.store import app_settings, call_logs, media_files, push_subscriptions
from hipper.store.models import Voicemail as Message
from tests.calls.conftest import Exchange, phone, place_call, scenario
from tests.media_apps.conftest import call_from_phone, dominant_frequency, ear, silence, tone
from tests.notify.conftest import Browser, PushService, SmtpServer, push_service, smtp_server

pytestmark = pytest.mark.sip

__all__ = ["push_service", "smtp_server"]  # the notify fixtures, used here by name

MAIL_TO = "bob@example.nl"


@pytest.fixture
async def notifications(exchange: Exchange, smtp_server: SmtpServer) -> AsyncIterator[Notifications]:
    settings = exchange.settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_security": "none",
            "smtp_from": "voicemail@hipper.example",
            "smtp_timeout_seconds": 5.0,
            "vapid_subject": "mailto:ops@hipper.example",
        }
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    running = Notifications(settings, exchange.sessions, hub=EventHub(poll_seconds=0.2), settle_seconds=0.3)
    await running.ensure_cursor()
    running.start()
    yield running
    await running.close()


async def user_with(
    exchange: Exchange,
    push: PushService,
    name: str,
    extension: str,
    *,
    voicemail: Voicemail,
    missed_calls: bool = True,
    voicemail_push: bool = True,
) -> Browser:
    """A user with a phone number, voicemail settings, app settings (English, the push toggles) and one browser
    subscribed to the local push service."""
    user_id = await exchange.add_user(name, extension)
    await exchange.set_service(name, voicemail)
    browser = push.new_browser()
    keys = browser.subscription["keys"]
    toggles = PushNotifications(missed_calls=missed_calls, voicemail=voicemail_push)
    async with exchange.sessions() as session:
        await app_settings.save(session, user_id, AppSettings(language="en", push=toggles))
        await push_subscriptions.subscribe(session, user_id, browser.endpoint, keys["p256dh"], keys["auth"])
        await session.commit()
    return browser


def arrivals(smtp: SmtpServer) -> asyncio.Event:
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()
    smtp.sink.on_message = lambda: loop.call_soon_threadsafe(arrived.set)
    return arrived


async def pushes(push: PushService, count: int, limit: float = 20.0) -> list[dict[str, object]]:
    async with asyncio.timeout(limit):
        while len(push.delivered) < count:
            push.arrived.clear()
            await push.arrived.wait()
    return [delivered.message for delivered in push.delivered]


async def leave_message(exchange: Exchange, frequency: float, seconds: float) -> Message:
    """alice calls bob (all calls to voicemail), waits for the tone, speaks `frequency`, then stays silent until
    the exchange ends the message; returns the stored message."""
    alice = await ear()
    try:
        sipp = await call_from_phone(exchange, "alice", "202", alice)
        await alice.wait_for_tone(1000.0, limit=30)
        await asyncio.sleep(0.5)  # the 0.5 s tone ends; recording starts right after it
        await alice.talk(tone(frequency, seconds))
        await alice.talk(silence(3.0))  # the exchange ends the message after 1.5 s of silence
        await sipp.succeeded(30)
    finally:
        alice.close()
    call = await exchange.next_call()
    assert call.outcome == "voicemail"
    async with exchange.sessions() as session:
        [message] = (await session.execute(select(Message))).scalars()
    return message


def voicemail_settings(email: bool) -> Voicemail:
    # The address stays filled in when the e-mail is off: the toggle alone must stop the mail.
    return Voicemail(active=True, all_calls_to_voicemail=True, email_notification=email, email_address=MAIL_TO)


async def test_a_message_left_by_a_caller_is_mailed_with_its_audio_and_pushed(
    exchange: Exchange, smtp_server: SmtpServer, push_service: PushService, notifications: Notifications
) -> None:
    exchange.settings.voicemail_silence_seconds = 1.5
    await exchange.add_user("alice", "201")
    await user_with(exchange, push_service, "bob", "202", voicemail=voicemail_settings(email=True))
    mailed = arrivals(smtp_server)
    message = await leave_message(exchange, 440.0, 2.0)
    async with asyncio.timeout(20):
        await mailed.wait()
    # The call left two things: the message, and bob's call-log row of a call he missed (it went to voicemail).
    delivered = await pushes(push_service, 2)
    await notifications.idle()

    [mail] = smtp_server.sink.messages
    assert mail["To"] == MAIL_TO
    assert "New voicemail from" in " ".join(str(mail["Subject"]).split())
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "audio/wav"
    payload = attachment.get_payload()
    assert isinstance(payload, str)
    wav = base64.b64decode(payload)
    assert wav == media_files.resolve(exchange.settings.data_dir, message.media_path).read_bytes()
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="int16")
    assert rate == SAMPLE_RATE and audio.ndim == 1
    # What alice's RTP carried: 2 s of 440 Hz (give or take a busy machine), then the kept second of silence.
    voiced = audio[np.abs(audio) > 500]
    assert 1.6 <= len(voiced) / SAMPLE_RATE <= 2.2
    loud_start = int(np.argmax(np.abs(audio) > 500))
    assert dominant_frequency(audio[loud_start : loud_start + SAMPLE_RATE]) == pytest.approx(440.0, abs=10)
    # From the first sound (the silence before it is the time between the tone and alice's talking, which a loaded
    # machine stretches).
    assert 2.8 <= (len(audio) - loud_start) / SAMPLE_RATE <= 3.2

    by_type = {str(item["type"]): item for item in delivered}
    assert sorted(by_type) == ["missed_call", "voicemail"]
    assert push_service.problems == []
    vm = by_type["voicemail"]
    assert (vm["title"], vm["voicemail_id"], vm["caller_number"]) == ("New voicemail", message.id, "201")
    assert vm["duration_ms"] == message.duration_ms
    [row] = await exchange.call_logs("bob")
    assert (row.direction, row.outcome) == ("missed", "voicemail")
    missed = by_type["missed_call"]
    assert (missed["title"], missed["call_log_id"], missed["caller_number"]) == ("Missed call", row.id, "201")


async def test_with_the_toggles_off_a_message_sends_no_mail_and_no_voicemail_push(
    exchange: Exchange, smtp_server: SmtpServer, push_service: PushService, notifications: Notifications
) -> None:
    exchange.settings.voicemail_silence_seconds = 1.5
    await exchange.add_user("alice", "201")
    await user_with(
        exchange, push_service, "bob", "202", voicemail=voicemail_settings(email=False), voicemail_push=False
    )
    message = await leave_message(exchange, 600.0, 1.0)
    # The missed-call push is still on. Its event comes after the message's (the call-log row is written when
    # the call ends), so once it arrived and the dispatcher is idle, the message's notifications were decided.
    [delivered] = await pushes(push_service, 1)
    await notifications.idle()
    assert delivered["type"] == "missed_call"
    assert smtp_server.sink.messages == [] and smtp_server.sink.attempts == 0
    assert message.duration_ms > 0  # there was a message to notify about


@pytest.mark.parametrize("missed_calls", [True, False], ids=["on", "off"])
async def test_a_caller_who_hangs_up_while_ringing_is_pushed_as_a_missed_call(
    exchange: Exchange, push_service: PushService, notifications: Notifications, missed_calls: bool
) -> None:
    await exchange.add_user("alice", "201")
    await user_with(exchange, push_service, "bob", "202", voicemail=Voicemail(active=False), missed_calls=missed_calls)
    carol = await user_with(exchange, push_service, "carol", "203", voicemail=Voicemail(active=False))
    bob_phone = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    alice = await place_call(
        exchange, "alice", "202", "final_cancel.xml", ring_ms=800,
        provisional='<recv response="100" optional="true" />\n  <recv response="180" />',
    )  # fmt: skip
    await alice.succeeded()
    await bob_phone.succeeded()
    call = await exchange.next_call()
    assert call.outcome == "cancelled"
    [row] = await exchange.call_logs("bob")
    assert row.direction == "missed"
    # A later missed call of carol's marks the point by which bob's push would have been sent.
    async with exchange.sessions() as session:
        now = datetime.now(UTC)
        marker = await call_logs.record_call(
            session, exchange.users["carol"], kind="missed", started_at=now, answered_at=None, ended_at=now,
            remote_number="+31612345678", remote_name="",
        )  # fmt: skip
        await session.commit()
    delivered = await pushes(push_service, 2 if missed_calls else 1)
    await notifications.idle()
    assert len(push_service.delivered) == (2 if missed_calls else 1)
    carol_path = carol.endpoint.removeprefix(push_service.base_url)
    assert [d.message["call_log_id"] for d in push_service.delivered if d.path == carol_path] == [marker.id]
    bob_pushes = [d.message for d in push_service.delivered if d.path != carol_path]
    if missed_calls:
        [pushed] = bob_pushes
        assert (pushed["type"], pushed["title"]) == ("missed_call", "Missed call")
        assert (pushed["call_log_id"], pushed["caller_number"]) == (row.id, "201")
    else:
        assert bob_pushes == []
    assert len(delivered) == len(push_service.delivered)
