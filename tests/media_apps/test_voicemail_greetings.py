"""The greeting a caller hears depends on why voicemail took the call: a real busy refusal (486 from bob's SIPp
phone) plays bob's busy greeting, a phone ringing unanswered plays his no-answer greeting. Each greeting is a
test tone of its own pitch, so the caller's RTP socket tells which one it heard; the system greeting is told
apart by finding its recorded word ("busy" / "unavailable") in what the caller heard."""

from __future__ import annotations

import numpy as np
import pytest

from hipper.domain.greetings import GreetingCase
from hipper.domain.services import CallWaiting, Voicemail
from hipper.media.g711 import SAMPLE_RATE, Pcm
from hipper.media.prompts import prompt_path
from hipper.media.tones import sine
from hipper.media.wavfile import read_wav, write_wav
from hipper.store import greetings
from tests.calls.conftest import Exchange, phone, scenario
from tests.media_apps.conftest import call_from_phone, dominant_frequency, ear, rms, silence

pytestmark = pytest.mark.sip

NO_ANSWER_HZ = 500.0
BUSY_HZ = 800.0  # both well away from the 1 kHz tone that ends the greeting


async def setup(exchange: Exchange, chosen: dict[GreetingCase, float]) -> None:
    """bob: voicemail on busy and after one ring; a greeting of its own pitch for each case in `chosen`."""
    exchange.settings.voicemail_silence_seconds = 1.5
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    # Voicemail on busy goes with call waiting off (manual §7.4.1, the service's own check).
    await exchange.set_service("bob", CallWaiting(active=False))
    await exchange.set_service("bob", Voicemail(active=True, on_busy=True, on_no_answer=True, rings=1))
    data_dir = exchange.settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    for case, frequency in chosen.items():
        wav = data_dir / f"{case}.wav"
        write_wav(wav, sine(frequency, 1.5))
        async with exchange.sessions() as session:
            row = await greetings.add(session, data_dir, exchange.users["bob"], case, wav.read_bytes(), 1500)
            await greetings.set_active(session, row, True, case)
            await session.commit()


async def greeting_heard(exchange: Exchange, bob_answers: str) -> Pcm:
    """alice calls bob, whose phone `bob_answers` ("busy" or "rings"); returns what alice heard before the tone,
    after checking that voicemail took the call for that reason."""
    if bob_answers == "busy":
        bob = await phone(exchange, "bob", "bob", scenario("callee_refuses.xml", status=486))
    else:
        bob = await phone(exchange, "bob", "bob", scenario("callee_rings.xml"))
    alice = await ear()
    try:
        sipp = await call_from_phone(exchange, "alice", "202", alice)
        beep_at = await alice.wait_for_tone(1000.0, limit=30)
        await alice.talk(silence(3.0))  # no message: the exchange says goodbye after 1.5 s and hangs up
        await sipp.succeeded(30)
        await bob.succeeded()
    finally:
        alice.close()
    call = await exchange.next_call()
    assert call.outcome == "voicemail"
    expected = {"busy": "busy, voicemail", "rings": "no-answer, voicemail"}[bob_answers]
    assert [row.outcome for row in await exchange.call_logs("bob")] == [expected]
    return alice.audio()[: beep_at - 1600]


@pytest.mark.parametrize(
    ("bob_answers", "frequency"), [("busy", BUSY_HZ), ("rings", NO_ANSWER_HZ)], ids=["busy", "no-answer"]
)
async def test_busy_and_no_answer_each_play_their_own_greeting(
    exchange: Exchange, bob_answers: str, frequency: float
) -> None:
    await setup(exchange, {"no_answer": NO_ANSWER_HZ, "busy": BUSY_HZ})
    heard = (await greeting_heard(exchange, bob_answers))[-SAMPLE_RATE:]
    assert rms(heard) > 1000  # a greeting, not the spoken system prompt
    assert dominant_frequency(heard) == pytest.approx(frequency, abs=10)


async def test_busy_without_a_busy_greeting_plays_the_no_answer_greeting(exchange: Exchange) -> None:
    await setup(exchange, {"no_answer": NO_ANSWER_HZ})
    heard = (await greeting_heard(exchange, "busy"))[-SAMPLE_RATE:]
    assert rms(heard) > 1000
    assert dominant_frequency(heard) == pytest.approx(NO_ANSWER_HZ, abs=10)


def match(heard: Pcm, word: Pcm) -> float:
    """The best normalised cross-correlation of `word` anywhere in `heard` (1.0: heard sample for sample)."""
    signal = heard.astype(np.float64)
    template = word.astype(np.float64)
    dots = np.correlate(signal, template, mode="valid")
    energy = np.concatenate(([0.0], np.cumsum(signal**2)))
    windows = np.sqrt(energy[len(template) :] - energy[: -len(template)])
    return float(np.max(dots / (np.linalg.norm(template) * np.maximum(windows, 1e-9))))


@pytest.mark.parametrize(
    ("bob_answers", "said", "not_said"), [("busy", "busy", "unavailable"), ("rings", "unavailable", "busy")]
)
async def test_the_system_greeting_says_busy_or_unavailable(
    exchange: Exchange, bob_answers: str, said: str, not_said: str
) -> None:
    await setup(exchange, {})
    heard = await greeting_heard(exchange, bob_answers)
    # The recorded words went through G.711 A-law and back: about 0.999 for a word said, about 0.3 for another.
    assert match(heard, read_wav(prompt_path("en", f"reason_{said}"))) > 0.95
    assert match(heard, read_wav(prompt_path("en", f"reason_{not_said}"))) < 0.6
    assert match(heard, read_wav(prompt_path("en", "n2"))) > 0.95  # it names the number: 2 0 2
