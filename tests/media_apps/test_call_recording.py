"""Call recording in its five modes, driven by in-call keypad codes (*1 record, *2 pause, *3 resume), judged
on the stored audio: which tones are in it, and silence where it was paused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from sqlalchemy import select

from hipper.apps.recording import recorders_of
from hipper.domain.services import CallRecording
from hipper.media.g711 import SAMPLE_RATE
from hipper.store.models import Recording
from tests.calls.conftest import Exchange
from tests.media_apps.conftest import (
    Ear,
    answering_phone,
    audio_of,
    band_energy,
    call_from_phone,
    ear,
    rms,
    settled,
    tone,
)

pytestmark = pytest.mark.sip


async def recorded_call(
    exchange: Exchange, mode: str, script: Callable[[Ear], Awaitable[None]], talk_ms: int | None = None
) -> list[Recording]:
    """alice (mode `mode`) calls bob; `script` talks and presses keys on alice's phone; then alice hangs up: at once,
    or `talk_ms` after the answer."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("alice", CallRecording.model_validate({"mode": mode}))
    alice, bob = await ear(), await ear()
    try:
        bob_phone = await answering_phone(exchange, "bob", bob)
        if talk_ms is None:
            sipp = await call_from_phone(exchange, "alice", "202", alice, end="end_hang_up_when_told.xml")
        else:
            sipp = await call_from_phone(exchange, "alice", "202", alice, end="end_hang_up.xml", talk_ms=talk_ms)
        await bob.connected()
        await alice.connected()
        if mode not in ("never", "on_demand_user_start"):
            await recording_started(exchange, "alice")  # the recorder starts just after the answer, not with it
        await script(alice)
        await (sipp.hang_up(20) if talk_ms is None else sipp.succeeded(20))
        await bob_phone.succeeded(20)
    finally:
        alice.close()
        bob.close()
    call = await exchange.next_call()
    assert call.answered
    await settled(exchange)
    async with exchange.sessions() as session:
        return list((await session.execute(select(Recording).order_by(Recording.id))).scalars())


async def recording_started(exchange: Exchange, user: str, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while True:
            recorders = [recorders_of(call).get(exchange.users[user]) for call in exchange.b2bua.calls]
            if any(recorder is not None and recorder.recording_id is not None for recorder in recorders):
                return
            await asyncio.sleep(0.02)  # polled: the recorder has no event to wait on


async def recording_paused(exchange: Exchange, user: str, paused: bool, limit: float = 10.0) -> None:
    """Until the user's recorder has carried out *2 (`paused`) or *3: the keys reach it as RTP, then its call's
    task, which a loaded machine runs later than the next thing the phone says."""
    async with asyncio.timeout(limit):
        while True:
            recorders = [recorders_of(call).get(exchange.users[user]) for call in exchange.b2bua.calls]
            if any(recorder is not None and recorder.paused == paused for recorder in recorders):
                return
            await asyncio.sleep(0.02)  # polled: the recorder has no event to wait on


def loud_seconds(audio: np.ndarray) -> float:
    """How much of the recording is loud, in 100 ms windows."""
    windows = audio[: len(audio) - len(audio) % 800].reshape(-1, 800)
    loud = int((np.sqrt((windows.astype(np.float64) ** 2).mean(axis=1)) > 300).sum())
    return loud / 10  # exact for a count of windows, where 12 * 0.1 is 1.2000000000000002


def has_tone(audio: np.ndarray, frequency: float) -> bool:
    return band_energy(audio, frequency, width=15) > 0.1


async def test_always_with_pause_resume_writes_silence_where_paused(exchange: Exchange) -> None:
    async def script(alice: Ear) -> None:
        await alice.talk(tone(440.0, 1.0))
        await alice.press("*2")
        await recording_paused(exchange, "alice", True)
        await alice.talk(tone(880.0, 1.0))  # said while paused: must not be in the recording
        await alice.press("*3")
        await recording_paused(exchange, "alice", False)
        await alice.talk(tone(660.0, 1.0))

    rows = await recorded_call(exchange, "always_pause_resume", script)
    assert len(rows) == 1 and rows[0].user_id == exchange.users["alice"] and rows[0].remote_number == "202"
    audio = audio_of(exchange, rows[0])
    assert abs(rows[0].duration_ms - len(audio) * 1000 // SAMPLE_RATE) <= 1
    assert has_tone(audio, 440.0) and has_tone(audio, 660.0) and not has_tone(audio, 880.0)
    assert 1.7 <= loud_seconds(audio) <= 2.3  # the two unpaused seconds
    # The paused stretch is kept as silence between them (the recording keeps the call's timeline).
    loud = np.flatnonzero(np.abs(audio) > 500)
    gaps = np.diff(loud)
    assert gaps.max() >= 1.0 * SAMPLE_RATE
    start = loud[int(np.argmax(gaps))] + 400
    assert rms(audio[start : start + int(0.8 * SAMPLE_RATE)]) < 50


async def test_always_records_the_whole_call_and_ignores_pause(exchange: Exchange) -> None:
    async def script(alice: Ear) -> None:
        await alice.talk(tone(440.0, 1.0))
        await alice.press("*2")
        await alice.talk(tone(880.0, 1.0))

    rows = await recorded_call(exchange, "always", script, talk_ms=7000)  # a call longer than the talk
    assert len(rows) == 1
    audio = audio_of(exchange, rows[0])
    assert has_tone(audio, 440.0) and has_tone(audio, 880.0)
    assert len(audio) / SAMPLE_RATE >= 5.0  # from the answer to the hang-up


async def test_on_demand_is_discarded_unless_record_is_pressed(exchange: Exchange) -> None:
    async def script(alice: Ear) -> None:
        await alice.talk(tone(440.0, 1.5))

    assert await recorded_call(exchange, "on_demand", script) == []
    assert not [p for p in (exchange.settings.data_dir / "spool").rglob("*") if p.is_file()]


async def test_on_demand_kept_when_record_pressed_holds_the_call_from_the_start(exchange: Exchange) -> None:
    async def script(alice: Ear) -> None:
        await alice.talk(tone(440.0, 1.0))
        await alice.press("*1")
        await alice.talk(tone(660.0, 1.0))

    rows = await recorded_call(exchange, "on_demand", script)
    assert len(rows) == 1
    audio = audio_of(exchange, rows[0])
    assert has_tone(audio, 440.0) and has_tone(audio, 660.0)  # from the start, not from the key press


async def test_on_demand_user_start_records_from_the_key_press(exchange: Exchange) -> None:
    async def script(alice: Ear) -> None:
        await alice.talk(tone(440.0, 1.0))
        await alice.press("*1")
        await recording_started(exchange, "alice")  # carried out: a loaded machine's start comes later than the talk
        await alice.talk(tone(660.0, 1.0))

    rows = await recorded_call(exchange, "on_demand_user_start", script)
    assert len(rows) == 1
    audio = audio_of(exchange, rows[0])
    assert has_tone(audio, 660.0) and not has_tone(audio, 440.0)
    assert 0.8 <= loud_seconds(audio) <= 1.2


async def test_never_records_nothing_even_when_asked(exchange: Exchange) -> None:
    async def script(alice: Ear) -> None:
        await alice.press("*1")
        await alice.talk(tone(440.0, 1.0))

    assert await recorded_call(exchange, "never", script) == []


async def test_a_recording_of_a_call_going_on_when_the_node_stops_is_stored(exchange: Exchange) -> None:
    """The node stops (`B2bua.close`) while alice's recorded call goes on: the call ends, and its recording —
    stopped at the call's end and stored in a task of its own — is stored before the database closes."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("alice", CallRecording.model_validate({"mode": "always"}))
    alice, bob = await ear(), await ear()
    try:
        bob_phone = await answering_phone(exchange, "bob", bob)
        alice_phone = await call_from_phone(exchange, "alice", "202", alice)
        await bob.connected()
        await alice.connected()
        await recording_started(exchange, "alice")
        await alice.talk(tone(440.0, 1.0))
        await exchange.b2bua.close()  # the node stops: the call's end is its BYEs
        await alice_phone.succeeded(20)
        await bob_phone.succeeded(20)
    finally:
        alice.close()
        bob.close()
    async with exchange.sessions() as session:
        rows = list((await session.execute(select(Recording))).scalars())
    assert [row.user_id for row in rows] == [exchange.users["alice"]]
    assert has_tone(audio_of(exchange, rows[0]), 440.0)
