"""Web Push for missed calls and new voicemail (SPEC L, M4) against a local push service that decrypts.

Subscriptions are stored through the store here because the API accepts only https endpoints and the local
push service speaks plain HTTP; the API itself is covered in test_api.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from hipper.api.state import AppState
from hipper.media.audio_files import pcm16_to_wav
from hipper.notify import Notifications, start_notifications
from hipper.notify.dispatcher import PAGE
from hipper.store import call_logs, push_subscriptions, voicemails
from hipper.store.events import add_event
from hipper.store.models import CallLog, Event, NotificationCursor, PushSubscription, Voicemail
from tests.conftest import LoggedIn, UserFactory
from tests.notify.conftest import Browser, PushService, SmtpServer, origin
from tests.notify.test_email import drain

STARTED = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # 09:30 in Amsterdam


async def subscribe(state: AppState, user_id: int, browser: Browser) -> int:
    keys = browser.subscription["keys"]
    async with state.sessions() as session:
        row = await push_subscriptions.subscribe(session, user_id, browser.endpoint, keys["p256dh"], keys["auth"])
        await session.commit()
        return row.id


async def missed_call(state: AppState, user_id: int, kind: str = "missed", **fields: str) -> CallLog:
    async with state.sessions() as session:
        row = await call_logs.record_call(
            session,
            user_id,
            kind=kind,  # type: ignore[arg-type]
            started_at=STARTED,
            answered_at=None if kind == "missed" else STARTED + timedelta(seconds=3),
            ended_at=STARTED + timedelta(seconds=20),
            remote_number=fields.get("number", "+31612345678"),
            remote_name=fields.get("name", ""),
        )
        await session.commit()
    state.events.published()
    return row


async def voicemail(state: AppState, user_id: int) -> Voicemail:
    async with state.sessions() as session:
        return await voicemails.deposit(
            session,
            state.settings.data_dir,
            user_id,
            pcm16_to_wav(bytes(1600)),
            received_at=STARTED,
            caller_number="+31201234567",
            caller_name="Acme Receptie",
            published=state.events.published,
        )


async def push_off(user: LoggedIn, **toggles: bool) -> None:
    assert (await user.put("/me/app-settings", json={"push": toggles})).status_code == 200


@pytest.fixture
async def notifications(app: FastAPI) -> AsyncIterator[Notifications]:
    state: AppState = app.state.hipper
    state.settings = state.settings.model_copy(update={"vapid_subject": "mailto:ops@hipper.example"})
    started = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    await drain(started)
    yield started
    await started.close()


async def test_missed_call_reaches_every_browser_encrypted_and_signed(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications
) -> None:
    state: AppState = app.state.hipper
    user, other = await make_user(), await make_user()
    phone, laptop, others = push_service.new_browser(), push_service.new_browser(), push_service.new_browser()
    await subscribe(state, user.id, phone)
    await subscribe(state, user.id, laptop)
    await subscribe(state, other.id, others)
    row = await missed_call(state, user.id, name="Jan Jansen")
    await drain(notifications)

    assert push_service.problems == []
    assert sorted(d.path for d in push_service.delivered) == sorted(
        [phone.endpoint.removeprefix(push_service.base_url), laptop.endpoint.removeprefix(push_service.base_url)]
    )
    public_key = (await user.client.get("/api/v1/push/vapid-public-key")).json()["public_key"]
    for delivered in push_service.delivered:
        assert delivered.message == {
            "type": "missed_call",
            "title": "Gemiste oproep",
            "body": "Jan Jansen (25-11 09:30)",
            "url": "/#/calls",
            "tag": f"missed-call-{row.id}",
            "call_log_id": row.id,
            "caller_number": "+31612345678",
            "caller_name": "Jan Jansen",
            "started_at": "2026-11-25T08:30:00+00:00",
        }
        assert delivered.vapid_key == public_key
        assert delivered.jwt_claims["aud"] == origin(push_service.base_url)
        assert delivered.jwt_claims["sub"] == "mailto:ops@hipper.example"
        assert delivered.headers["urgency"] == "high"


async def test_new_voicemail_in_english_and_the_running_dispatcher(
    app: FastAPI, make_user: UserFactory, push_service: PushService
) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    assert (await user.put("/me/app-settings", json={"language": "en"})).status_code == 200
    await subscribe(state, user.id, push_service.new_browser())
    running = await start_notifications(state)
    try:
        row = await voicemail(state, user.id)
        async with asyncio.timeout(10):
            await push_service.arrived.wait()
    finally:
        await running.close()
    [delivered] = push_service.delivered
    assert delivered.message["type"] == "voicemail"
    assert delivered.message["title"] == "New voicemail"
    assert delivered.message["body"] == "Acme Receptie (25-11 09:30)"
    assert delivered.message["voicemail_id"] == row.id
    assert delivered.message["duration_ms"] == 100
    assert delivered.jwt_claims["sub"].startswith("mailto:")


async def test_toggles_are_honoured(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications
) -> None:
    state: AppState = app.state.hipper
    no_missed, no_voicemail = await make_user(), await make_user()
    await push_off(no_missed, missed_calls=False)
    await push_off(no_voicemail, voicemail=False)
    first, second = push_service.new_browser(), push_service.new_browser()
    await subscribe(state, no_missed.id, first)
    await subscribe(state, no_voicemail.id, second)
    await missed_call(state, no_missed.id)
    await voicemail(state, no_voicemail.id)
    await drain(notifications)
    assert push_service.delivered == []
    # The other kind still arrives for each.
    await voicemail(state, no_missed.id)
    await missed_call(state, no_voicemail.id)
    await drain(notifications)
    assert sorted(d.message["type"] for d in push_service.delivered) == ["missed_call", "voicemail"]


async def test_answered_and_placed_calls_are_not_pushed(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications
) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    await missed_call(state, user.id, kind="received")
    await missed_call(state, user.id, kind="placed")
    await drain(notifications)
    assert push_service.delivered == []


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_deleted(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications, status: int
) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    gone, alive = push_service.new_browser(), push_service.new_browser()
    push_service.status_for[gone.endpoint.removeprefix(push_service.base_url)] = status
    await subscribe(state, user.id, gone)
    await subscribe(state, user.id, alive)
    await missed_call(state, user.id)
    await drain(notifications)
    async with state.sessions() as session:
        left = (await session.execute(select(PushSubscription.endpoint))).scalars().all()
    assert left == [alive.endpoint]
    assert len(push_service.delivered) == 1


async def test_a_failing_push_service_keeps_the_subscription(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications
) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    flaky = push_service.new_browser()
    push_service.status_for[flaky.endpoint.removeprefix(push_service.base_url)] = 503
    await subscribe(state, user.id, flaky)
    unreachable_id = await subscribe(state, user.id, push_service.new_browser())
    async with state.sessions() as session:  # a push service that is not there at all
        row = await session.get(PushSubscription, unreachable_id)
        assert row is not None
        row.endpoint = "http://127.0.0.1:9/push/nobody"
        await session.commit()
    await missed_call(state, user.id)
    await drain(notifications)
    async with state.sessions() as session:
        assert len((await session.execute(select(PushSubscription.id))).all()) == 2


async def test_two_dispatchers_never_notify_twice(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications
) -> None:
    """Two nodes following one outbox: the compare-and-set cursor gives each event to exactly one of them."""
    state: AppState = app.state.hipper
    other_node = Notifications(state.settings, state.sessions, settle_seconds=0.0)
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    rows = [await missed_call(state, user.id, number=f"+3161234{5000 + n}") for n in range(12)]
    await asyncio.gather(drain(notifications), drain(other_node))
    await other_node.close()
    tags = sorted(d.message["tag"] for d in push_service.delivered)
    assert tags == sorted(f"missed-call-{row.id}" for row in rows)


async def test_the_app_lifespan_starts_and_stops_notifications(
    app: FastAPI, make_user: UserFactory, push_service: PushService
) -> None:
    """`hipper serve` runs the app's lifespan: a missed call committed while it runs is pushed."""
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    async with app.router.lifespan_context(app):
        await missed_call(state, user.id)
        async with asyncio.timeout(10):
            await push_service.arrived.wait()
    assert [d.message["type"] for d in push_service.delivered] == ["missed_call"]


async def test_long_runs_of_other_events_are_passed(
    app: FastAPI, make_user: UserFactory, push_service: PushService, notifications: Notifications
) -> None:
    state: AppState = app.state.hipper
    user = await make_user()
    await subscribe(state, user.id, push_service.new_browser())
    async with state.sessions() as session:
        for n in range(PAGE + 20):
            add_event(session, user.id, "service.changed", {"service": "do-not-disturb", "n": n})
        await session.commit()
    row = await missed_call(state, user.id)
    await drain(notifications)
    assert [d.message["call_log_id"] for d in push_service.delivered] == [row.id]
    async with state.sessions() as session:
        cursor = await session.get(NotificationCursor, "notifications")
        newest = (await session.execute(select(func.max(Event.id)))).scalar_one()
        assert cursor is not None and cursor.last_event_id == newest


async def test_an_smtp_outage_does_not_hold_up_pushes(
    app: FastAPI, make_user: UserFactory, push_service: PushService, smtp_server: SmtpServer
) -> None:
    """E-mail retries wait minutes; pushes have their own send slots and go out meanwhile."""
    state: AppState = app.state.hipper
    state.settings = state.settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_security": "none",
            "notify_retry_seconds": 60.0,
        }
    )
    smtp_server.sink.refuse = 1000
    dispatcher = Notifications(state.settings, state.sessions, settle_seconds=0.0, concurrency=1)
    await dispatcher.ensure_cursor()
    user = await make_user()
    await user.step_up()  # the e-mail address needs the PIN
    response = await user.put("/me/services/voicemail", json={"email_notification": True, "email_address": "a@b.nl"})
    assert response.status_code == 200, response.text
    await subscribe(state, user.id, push_service.new_browser())
    first, second = await voicemail(state, user.id), await voicemail(state, user.id)
    call = await missed_call(state, user.id)
    try:
        events, _ = await dispatcher.claim()
        for event in events:
            dispatcher.handle(event)
        async with asyncio.timeout(10):
            while len(push_service.delivered) < 3:
                push_service.arrived.clear()
                await push_service.arrived.wait()
        # The pushes need not wait for the mail slot's first try, nor it for them: wait for both.
        assert await asyncio.to_thread(smtp_server.sink.attempted.wait, 10)
        assert smtp_server.sink.attempts == 1  # the one mail slot is waiting to retry; the other mail queues
    finally:
        await dispatcher.close(grace_seconds=0.1)
    assert sorted(d.message["tag"] for d in push_service.delivered) == sorted(
        [f"voicemail-{first.id}", f"voicemail-{second.id}", f"missed-call-{call.id}"]
    )
