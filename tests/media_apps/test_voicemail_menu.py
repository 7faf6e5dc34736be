"""Voicemail by phone: the access code from one's own phone (no PIN), the voicemail number from outside
(mailbox + PIN); keys replay, save (heard), delete and end. Judged by the tones of the messages heard."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hipper.domain.services import Voicemail as VoicemailService
from hipper.media import g711
from hipper.media.prompts import prompt_path
from hipper.media.tones import sine
from hipper.media.wavfile import read_wav, write_wav
from hipper.passwords import Hasher
from hipper.store import media_files, voicemails
from hipper.store.models import User, Voicemail
from tests.calls.conftest import Exchange, place_call
from tests.media_apps.conftest import Ear, band_energy, call_from_phone, call_from_trunk, ear, rms, tone_heard

pytestmark = pytest.mark.sip


async def leave(exchange: Exchange, user: str, frequency: float, minutes_ago: int) -> int:
    path = exchange.workdir / f"message-{frequency:.0f}.wav"
    write_wav(path, sine(frequency, 1.5))
    async with exchange.sessions() as session:
        row = await voicemails.deposit(
            session, exchange.settings.data_dir, exchange.users[user], path.read_bytes(),
            received_at=datetime.now(UTC) - timedelta(minutes=minutes_ago), caller_number="+31612345678",
        )  # fmt: skip
        return row.id


async def prompt_begins(exchange: Exchange, caller: Ear, key: str, limit: float = 20.0) -> None:
    """Until `caller` hears the prompt `key` begin after what it heard so far: its first loud 20 ms, exactly as
    the engine sends it (A-law). Keys pressed while the exchange still speaks the prompt before it ("That PIN is
    not correct") only stop that one, so a test waits for this instead of the time the prompts take."""
    samples = read_wav(prompt_path(exchange.settings.prompt_language, key))
    frames = samples[: len(samples) - len(samples) % 160].reshape(-1, 160)
    loud = next(frame for frame in frames if rms(frame) > 1000)
    payload = g711.encode(loud, "PCMA")
    start = len(caller.phone.received)
    async with asyncio.timeout(limit):
        while not any(r.packet.payload == payload for r in caller.phone.received[start:]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polled: packets arriving on the caller's socket


async def rows(exchange: Exchange, user: str) -> dict[int, Voicemail]:
    async with exchange.sessions() as session:
        found = await session.execute(select(Voicemail).where(Voicemail.user_id == exchange.users[user]))
        return {row.id: row for row in found.scalars()}


async def test_own_phone_replays_saves_and_deletes(exchange: Exchange) -> None:
    await exchange.add_user("bob", "202")
    first = await leave(exchange, "bob", 600.0, minutes_ago=30)
    second = await leave(exchange, "bob", 900.0, minutes_ago=5)
    second_path = (await rows(exchange, "bob"))[second].media_path
    bob = await ear()
    try:
        sipp = await call_from_phone(exchange, "bob", "*86", bob)
        await bob.wait_for_tone(600.0, limit=20)  # the oldest new message first
        assert exchange.b2bua.on_call(exchange.users["bob"])  # Bob is on a call: busy for others
        await bob.press("1")  # replay
        await asyncio.sleep(1.0)
        await bob.wait_for_tone(600.0, limit=20)
        await bob.press("9")  # save: marked heard
        await bob.wait_for_tone(900.0, limit=20)  # then the next
        await bob.press("7")  # delete
        await sipp.succeeded(30)  # "no more messages, goodbye" and the exchange hangs up
    finally:
        bob.close()
    summary = await exchange.next_call()
    # Listening to one's voicemail is an answered call (it used to end as "failed", with no call-log row).
    assert (summary.outcome, summary.answered) == ("answered", True)
    assert summary.parties == [(exchange.users["bob"], "placed", "answered")]
    [logged] = await exchange.call_logs("bob")
    assert (logged.direction, logged.remote_number, logged.remote_name, logged.outcome) == (
        "placed", "*86", "Voicemail", "answered",
    )  # fmt: skip
    assert logged.answered_at is not None and logged.ended_at is not None and logged.answered_at <= logged.ended_at
    assert not exchange.b2bua.on_call(exchange.users["bob"])  # on a call while listening, and no longer after it
    heard = bob.audio()
    start_of_first = heard[: 8000 * 3]
    assert rms(start_of_first) > 300 and band_energy(start_of_first, 600.0) < 0.2  # "You have 2 new messages"
    left = await rows(exchange, "bob")
    assert list(left) == [first] and left[first].heard
    assert not media_files.resolve(exchange.settings.data_dir, second_path).exists()


async def test_from_outside_with_mailbox_and_pin_after_a_wrong_pin(exchange: Exchange) -> None:
    exchange.settings.voicemail_number = "+31201234999"
    await exchange.add_user("bob", "202", direct="+31201234102")
    await exchange.set_service("bob", VoicemailService(active=True))
    async with exchange.sessions() as session:
        user = await session.get(User, exchange.users["bob"])
        assert user is not None
        user.pin_hash = Hasher(1, 1024).hash_sync("2580")
        await session.commit()
    await leave(exchange, "bob", 700.0, minutes_ago=1)
    caller = await ear()
    try:
        sipp = await call_from_trunk(exchange, "+31611112222", "+31201234999", caller)
        await caller.connected()
        await caller.press("0201234102#")
        await caller.press("1111#")  # wrong
        await prompt_begins(exchange, caller, "enter_mailbox")  # "That PIN is not correct", then the mailbox again
        assert not tone_heard(caller.audio(), 700.0)
        await caller.press("0201234102#")
        await caller.press("2580#")
        await caller.wait_for_tone(700.0, limit=20)
        await caller.press("*")  # end
        await sipp.succeeded(30)
    finally:
        caller.close()
    summary = await exchange.next_call()
    assert (summary.outcome, summary.answered) == ("answered", True)
    # The caller is no user of ours and the mailbox owner placed no call: nobody's call log gets a row.
    assert summary.parties == [] and await exchange.call_logs("bob") == []
    left = await rows(exchange, "bob")
    assert len(left) == 1 and not next(iter(left.values())).heard  # only listened to, not saved


async def test_a_locked_pin_opens_nothing_even_when_right(exchange: Exchange) -> None:
    exchange.settings.voicemail_number = "+31201234999"
    await exchange.add_user("bob", "202", direct="+31201234102")
    locked_until = datetime.now(UTC) + timedelta(minutes=15)
    async with exchange.sessions() as session:
        user = await session.get(User, exchange.users["bob"])
        assert user is not None
        user.pin_hash = Hasher(1, 1024).hash_sync("2580")
        user.pin_locked_until = locked_until  # e.g. after wrong PINs in the app or by phone
        await session.commit()
    await leave(exchange, "bob", 700.0, minutes_ago=1)
    caller = await ear()
    try:
        sipp = await call_from_trunk(
            exchange, "+31611112222", "+31201234999", caller, end="end_hang_up.xml", talk_ms=12000
        )
        await caller.connected()
        await caller.press("0201234102#")
        await caller.press("2580#")  # right, but locked
        await sipp.succeeded(20)
    finally:
        caller.close()
    await exchange.next_call()
    heard = caller.audio()
    assert rms(heard) > 300  # prompts were heard ...
    assert not tone_heard(heard, 700.0)  # ... but never the message
    async with exchange.sessions() as session:
        user = await session.get(User, exchange.users["bob"])
        assert user is not None and user.pin_locked_until is not None


async def test_three_wrong_pins_from_outside_end_the_call_and_lock_the_pin(exchange: Exchange) -> None:
    """The documented limits, end to end: three tries per call, and wrong PINs by phone count against the user
    like the app's step-up (here `pin_attempts` = 3, so this one call locks the PIN)."""
    exchange.settings.voicemail_number = "+31201234999"
    exchange.settings.pin_attempts = 3
    await exchange.add_user("bob", "202", direct="+31201234102")
    async with exchange.sessions() as session:
        user = await session.get(User, exchange.users["bob"])
        assert user is not None
        user.pin_hash = Hasher(1, 1024).hash_sync("2580")
        await session.commit()
    message = await leave(exchange, "bob", 700.0, minutes_ago=1)
    caller = await ear()
    started = datetime.now(UTC)
    try:
        sipp = await call_from_trunk(exchange, "+31611112222", "+31201234999", caller)  # waits for our BYE
        await caller.connected()
        for wrong in ("1111", "2222"):
            await caller.press(f"0201234102#{wrong}#")
            await prompt_begins(exchange, caller, "enter_mailbox")  # "That PIN is not correct", then the mailbox
        await caller.press("0201234102#3333#")
        # "That PIN is not correct. Goodbye." (about 2 s) and the BYE, well before a fourth try could have timed out
        # (the same, the mailbox prompt and 10 s for a key: 15 s).
        await sipp.succeeded(11)
    finally:
        caller.close()
    await exchange.next_call()
    assert rms(caller.audio()) > 300  # the prompts were heard ...
    assert not tone_heard(caller.audio(), 700.0)  # ... but never the message
    async with exchange.sessions() as session:
        user = await session.get(User, exchange.users["bob"])
        assert user is not None and user.pin_locked_until is not None
        locked_until = user.pin_locked_until.replace(tzinfo=UTC)
    expected = started + timedelta(seconds=exchange.settings.pin_lockout_seconds)
    assert expected <= locked_until <= expected + timedelta(seconds=60)
    left = await rows(exchange, "bob")
    assert list(left) == [message] and not left[message].heard


async def test_without_the_voicemail_licence_ones_own_phone_gets_403(exchange: Exchange) -> None:
    """docs/voicemail.md: users without the `voicemail` licence have no mailbox; their own phone gets 403."""
    await exchange.add_user("bob", "202", licences=("do-not-disturb",))
    sipp = await place_call(exchange, "bob", "*86", "final_rejected.xml", status=403)
    await sipp.succeeded(20)
    summary = await exchange.next_call()
    assert (summary.answered, summary.parties) == (False, [(exchange.users["bob"], "placed", "no-voicemail-licence")])
    [logged] = await exchange.call_logs("bob")
    assert (logged.remote_name, logged.outcome, logged.answered_at) == ("Voicemail", "no-voicemail-licence", None)
