"""Voicemail deposit end to end: SIPp calls, the exchange answers with a greeting and a tone, the caller's RTP
socket speaks a test tone, and the stored message is judged by its audio (length, frequency)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from hipper.domain.services import Voicemail
from hipper.media.g711 import SAMPLE_RATE
from hipper.media.tones import sine
from hipper.media.wavfile import read_wav, write_wav
from hipper.store import greetings, media_files
from hipper.store.models import Voicemail as Message
from tests.calls.conftest import Exchange
from tests.media_apps.conftest import band_energy, call_from_phone, dominant_frequency, ear, rms, silence, tone

pytestmark = pytest.mark.sip


async def messages(exchange: Exchange, user: str) -> list[Message]:
    async with exchange.sessions() as session:
        rows = await session.execute(select(Message).where(Message.user_id == exchange.users[user]))
        return list(rows.scalars())


async def setup(exchange: Exchange, *, silence_seconds: float = 1.5, max_seconds: float = 20.0) -> None:
    exchange.settings.voicemail_silence_seconds = silence_seconds
    exchange.settings.voicemail_max_seconds = max_seconds
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", Voicemail(active=True, all_calls_to_voicemail=True))


async def test_message_after_system_greeting_and_beep_ends_on_silence(exchange: Exchange) -> None:
    await setup(exchange)
    alice = await ear()
    try:
        sipp = await call_from_phone(exchange, "alice", "202", alice)
        beep_at = await alice.wait_for_tone(1000.0, limit=30)
        await asyncio.sleep(0.5)  # the 0.5 s beep ends; recording starts right after it
        await alice.talk(tone(440.0, 2.0))
        await alice.talk(silence(3.0))  # the exchange ends the message after 1.5 s of silence
        await sipp.succeeded(30)  # ... says goodbye and hangs up
    finally:
        alice.close()
    call = await exchange.next_call()  # the call ends once the message is stored
    assert call.outcome == "voicemail"
    heard = alice.audio()
    greeting = heard[: beep_at - 1600]
    assert len(greeting) > SAMPLE_RATE  # the spoken system greeting came before the tone
    assert rms(greeting) > 300 and band_energy(greeting, 1000.0) < 0.3
    rows = await messages(exchange, "alice") + await messages(exchange, "bob")
    assert len(rows) == 1 and rows[0].user_id == exchange.users["bob"]
    message = rows[0]
    assert message.caller_number == "201" and not message.heard
    audio = read_wav(media_files.resolve(exchange.settings.data_dir, message.media_path))
    assert abs(message.duration_ms - len(audio) * 1000 // SAMPLE_RATE) <= 1
    voiced = audio[np.abs(audio) > 500]
    assert 1.6 <= len(voiced) / SAMPLE_RATE <= 2.2  # a busy machine may start the talking late
    loud_start = int(np.argmax(np.abs(audio) > 500))
    # From the first sound: 2 s of tone plus the kept second of silence (the rest of the silent tail is cut). The
    # silence before it is the time between the beep's end and our talking, which a loaded machine stretches.
    assert 2.8 <= (len(audio) - loud_start) / SAMPLE_RATE <= 3.2
    # The message starts at the beep, not at the answer: recorded from the answer, the greeting's length of silence
    # would come first (the test talks at once after the beep; a loaded machine delays that by far less).
    assert loud_start < len(greeting)
    assert dominant_frequency(audio[loud_start : loud_start + SAMPLE_RATE]) == pytest.approx(440.0, abs=10)
    assert rms(audio[-SAMPLE_RATE // 2 :]) < 50  # it ends in the kept silence
    # No spool file is left and the message lies in media/voicemail only.
    assert not list((exchange.settings.data_dir / "spool").rglob("*.wav"))


async def test_active_greeting_is_played_and_hang_up_ends_the_message(exchange: Exchange) -> None:
    await setup(exchange, silence_seconds=8.0)
    data_dir = exchange.settings.data_dir
    greeting_wav = data_dir / "greeting.wav"
    write_wav(greeting_wav, sine(600.0, 1.5))
    async with exchange.sessions() as session:
        greeting = await greetings.add(
            session, data_dir, exchange.users["bob"], "Away", greeting_wav.read_bytes(), 1500
        )
        await greetings.set_active(session, greeting, True)
        await session.commit()
    alice = await ear()
    try:
        sipp = await call_from_phone(exchange, "alice", "202", alice, end="end_hang_up.xml", talk_ms=4500)
        beep_at = await alice.wait_for_tone(1000.0, limit=20)
        await alice.talk(tone(700.0, 1.5))  # ... and SIPp hangs up while we still speak
        await sipp.succeeded(20)
    finally:
        alice.close()
    call = await exchange.next_call()  # the call ends once the message is stored
    assert call.outcome == "voicemail"
    heard = alice.audio()[: beep_at - 2000][-SAMPLE_RATE:]
    assert rms(heard) > 1000  # the greeting, not the system prompt: a 600 Hz tone
    assert dominant_frequency(heard) == pytest.approx(600.0, abs=10)
    rows = await messages(exchange, "bob")
    assert len(rows) == 1
    audio = read_wav(media_files.resolve(data_dir, rows[0].media_path))
    assert 0.5 <= len(audio) / SAMPLE_RATE <= 5.0
    loud_start = int(np.argmax(np.abs(audio) > 500))
    assert dominant_frequency(audio[loud_start : loud_start + 4000]) == pytest.approx(700.0, abs=10)
    assert rows[0].received_at.replace(tzinfo=UTC) <= datetime.now(UTC)


async def test_maximum_length_ends_the_message(exchange: Exchange) -> None:
    await setup(exchange, max_seconds=2.0)
    alice = await ear()
    try:
        sipp = await call_from_phone(exchange, "alice", "202", alice)
        await alice.wait_for_tone(1000.0, limit=30)
        talking = asyncio.ensure_future(alice.talk(tone(500.0, 5.0)))
        await sipp.succeeded(30)  # the exchange stops at 2 s, says goodbye, hangs up
        talking.cancel()
    finally:
        alice.close()
    call = await exchange.next_call()  # the call ends once the message is stored
    assert call.outcome == "voicemail"
    rows = await messages(exchange, "bob")
    assert len(rows) == 1
    audio = read_wav(media_files.resolve(exchange.settings.data_dir, rows[0].media_path))
    assert 1.8 <= len(audio) / SAMPLE_RATE <= 2.0  # never longer than the maximum, however late the stop came
    loud_start = int(np.argmax(np.abs(audio) > 500))
    assert dominant_frequency(audio[loud_start : loud_start + 4000]) == pytest.approx(500.0, abs=10)
