"""Voicemail by e-mail (SPEC H1, H3) against a real aiosmtpd server: the attachment is the stored audio."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from fastapi import FastAPI

from hipper.api.state import AppState
from hipper.media.audio_files import pcm16_to_wav
from hipper.notify import Notifications, start_notifications
from hipper.store import media_files, voicemails
from hipper.store.models import Voicemail
from tests.conftest import LoggedIn, UserFactory
from tests.notify.conftest import SmtpServer, TlsSmtpServer, free_port

RECEIVED = datetime(2026, 11, 25, 17, 5, 30, tzinfo=UTC)  # 18:05 in Amsterdam


def message_audio(seconds: float = 1.0) -> bytes:
    # A recorder's raw 8 kHz PCM turned into the WAV the deposit stores; varied so corruption would show.
    pcm = bytes((i * 7 + i // 13) % 256 for i in range(int(16000 * seconds)))
    return pcm16_to_wav(pcm)


def mail_settings(state: AppState, smtp: SmtpServer, **extra: object) -> AppState:
    state.settings = state.settings.model_copy(
        update={
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "smtp_from": "voicemail@hipper.example",
            "notify_retry_seconds": 0.05,
            "notify_email_attempts": 3,
            "smtp_timeout_seconds": 5.0,
            **extra,
        }
    )
    return state


async def email_on(user: LoggedIn, address: str = "jan@example.nl", on: bool = True) -> None:
    await user.step_up()  # a new address for the messages' audio needs the PIN (docs/security.md)
    response = await user.put(
        "/me/services/voicemail", json={"email_notification": on, "email_address": address if on else None}
    )
    assert response.status_code == 200, response.text


async def deposit(state: AppState, user_id: int, wav: bytes, **fields: str) -> Voicemail:
    async with state.sessions() as session:
        return await voicemails.deposit(
            session,
            state.settings.data_dir,
            user_id,
            wav,
            received_at=RECEIVED,
            caller_number=fields.get("caller_number", "+31612345678"),
            caller_name=fields.get("caller_name", "Piet de Vries"),
            published=state.events.published,
        )


def subject(mail: EmailMessage) -> str:
    return " ".join(str(mail["Subject"]).split())


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def drain(notifications: Notifications) -> None:
    """Claim and handle everything in the outbox now, then wait for the sending to finish."""
    while True:
        events, again = await notifications.claim()
        if not events and again != 0.0:
            break
        for event in events:
            notifications.handle(event)
    await notifications.idle()


@pytest.fixture
async def notifications(app: FastAPI) -> AsyncIterator[Notifications]:
    state: AppState = app.state.hipper
    started = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    await drain(started)  # makes the cursor: only what happens from here on is notified
    yield started
    await started.close()


async def test_deposit_mails_the_message_with_its_audio(
    app: FastAPI, make_user: UserFactory, smtp_server: SmtpServer
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    user = await make_user()
    await email_on(user)
    assert (await user.put("/me/app-settings", json={"language": "en"})).status_code == 200
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()
    smtp_server.sink.on_message = lambda: loop.call_soon_threadsafe(arrived.set)
    running = await start_notifications(state)
    try:
        wav = message_audio()
        row = await deposit(state, user.id, wav)
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        await running.close()

    [mail] = smtp_server.sink.messages
    assert mail["To"] == "jan@example.nl"
    assert mail["From"] == "voicemail@hipper.example"
    # Folded by the generator (a long Subject starts on a continuation line); a mail client unfolds it.
    assert subject(mail) == "New voicemail from Piet de Vries (+31612345678), 25 November 2026 at 18:05"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert "You have a new voicemail from Piet de Vries (+31612345678)" in text_of(mail)
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_filename() == "voicemail-20261125-180530.wav"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    payload = attachment.get_payload()
    assert isinstance(payload, str)
    decoded = base64.b64decode(payload)
    stored = media_files.resolve(state.settings.data_dir, row.media_path).read_bytes()
    assert decoded == stored == wav


async def test_dutch_is_the_default_language(
    app: FastAPI, make_user: UserFactory, smtp_server: SmtpServer, notifications: Notifications
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    notifications.settings = state.settings
    user = await make_user()
    await email_on(user, "piet@example.nl")
    await deposit(state, user.id, message_audio(0.5), caller_name="", caller_number="+31201234567")
    await drain(notifications)
    [mail] = smtp_server.sink.messages
    assert subject(mail) == "Nieuw voicemailbericht van +31201234567, 25 november 2026 om 18:05"
    assert "U heeft een nieuw voicemailbericht van +31201234567." in text_of(mail)


async def test_no_mail_when_the_toggle_is_off(
    app: FastAPI, make_user: UserFactory, smtp_server: SmtpServer, notifications: Notifications
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    notifications.settings = state.settings
    never, switched_off = await make_user(), await make_user()
    await email_on(switched_off)
    await email_on(switched_off, on=False)
    await deposit(state, never.id, message_audio(0.2))
    await deposit(state, switched_off.id, message_audio(0.2))
    await drain(notifications)
    assert smtp_server.sink.attempts == 0
    assert smtp_server.sink.messages == []


async def test_no_mail_without_the_voicemail_licence(
    app: FastAPI, make_user: UserFactory, smtp_server: SmtpServer, notifications: Notifications
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    notifications.settings = state.settings
    user = await make_user()
    await email_on(user)
    assert (await user.client.get("/api/v1/me", headers=user.headers)).status_code == 200
    async with state.sessions() as session:
        from hipper.store.models import User

        row = await session.get(User, user.id)
        assert row is not None
        row.licences = [name for name in row.licences if name != "voicemail"]
        await session.commit()
    await deposit(state, user.id, message_audio(0.2))
    await drain(notifications)
    assert smtp_server.sink.attempts == 0


async def test_a_refusing_server_is_retried_and_then_accepts(
    app: FastAPI,
    make_user: UserFactory,
    smtp_server: SmtpServer,
    notifications: Notifications,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    notifications.settings = state.settings
    smtp_server.sink.refuse = 2
    user = await make_user()
    await email_on(user)
    wav = message_audio(0.3)
    with caplog.at_level(logging.WARNING, logger="hipper.notify"):
        await deposit(state, user.id, wav)
        await drain(notifications)
    assert smtp_server.sink.attempts == 3
    [mail] = smtp_server.sink.messages
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content() == wav
    failures = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(failures) == 2 and all("451" in text for text in failures)


async def test_a_failing_server_is_given_up_after_bounded_attempts_and_nothing_is_lost(
    app: FastAPI,
    make_user: UserFactory,
    smtp_server: SmtpServer,
    notifications: Notifications,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    notifications.settings = state.settings
    smtp_server.sink.refuse = 1000
    user = await make_user()
    await email_on(user)
    wav = message_audio(0.3)
    with caplog.at_level(logging.WARNING, logger="hipper.notify"):
        row = await deposit(state, user.id, wav)
        await drain(notifications)
    assert smtp_server.sink.attempts == 3  # notify_email_attempts
    assert any("giving up" in r.getMessage() for r in caplog.records)
    # The message is still there, whole, for the app and the phone.
    listed = (await user.get("/me/voicemails")).json()
    assert [m["id"] for m in listed["messages"]] == [row.id]
    assert (await user.get(f"/me/voicemails/{row.id}/audio")).content == wav
    # And the dispatcher goes on: the next message is mailed once the server is back.
    smtp_server.sink.refuse = 0
    await deposit(state, user.id, message_audio(0.2))
    await drain(notifications)
    assert len(smtp_server.sink.messages) == 1


async def test_a_permanent_refusal_is_not_repeated(
    app: FastAPI, make_user: UserFactory, smtp_server: SmtpServer, notifications: Notifications
) -> None:
    state = mail_settings(app.state.hipper, smtp_server)
    notifications.settings = state.settings
    smtp_server.sink.refuse = 1000
    smtp_server.sink.refuse_with = "554 5.7.1 message refused"
    user = await make_user()
    await email_on(user)
    await deposit(state, user.id, message_audio(0.2))
    await drain(notifications)
    assert smtp_server.sink.attempts == 1


async def test_no_server_at_all_is_logged_not_raised(
    app: FastAPI,
    make_user: UserFactory,
    smtp_server: SmtpServer,
    notifications: Notifications,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = mail_settings(app.state.hipper, smtp_server, smtp_port=free_port())  # nothing listens there
    notifications.settings = state.settings
    user = await make_user()
    await email_on(user)
    with caplog.at_level(logging.WARNING, logger="hipper.notify"):
        await deposit(state, user.id, message_audio(0.2))
        await drain(notifications)
    failures = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(failures) == 3
    assert "giving up" in failures[-1]


async def test_starttls_and_login_as_on_a_submission_server(
    app: FastAPI, make_user: UserFactory, tls_smtp_server: TlsSmtpServer, notifications: Notifications
) -> None:
    state = mail_settings(
        app.state.hipper,
        tls_smtp_server,
        smtp_security="starttls",
        smtp_username=tls_smtp_server.username,
        smtp_password=tls_smtp_server.password,
        smtp_ca_file=tls_smtp_server.ca_file,
    )
    notifications.settings = state.settings
    user = await make_user()
    await email_on(user)
    wav = message_audio(0.2)
    await deposit(state, user.id, wav)
    await drain(notifications)
    [mail] = tls_smtp_server.sink.messages
    assert tls_smtp_server.logins  # it logged in (only possible after STARTTLS)
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content() == wav


async def test_an_untrusted_certificate_is_refused(
    app: FastAPI,
    make_user: UserFactory,
    tls_smtp_server: TlsSmtpServer,
    notifications: Notifications,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = mail_settings(
        app.state.hipper,
        tls_smtp_server,
        smtp_security="starttls",
        smtp_username=tls_smtp_server.username,
        smtp_password=tls_smtp_server.password,
    )
    notifications.settings = state.settings
    user = await make_user()
    await email_on(user)
    with caplog.at_level(logging.WARNING, logger="hipper.notify"):
        await deposit(state, user.id, message_audio(0.2))
        await drain(notifications)
    assert tls_smtp_server.sink.messages == []
    assert tls_smtp_server.logins == []  # the password never left the exchange
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)
