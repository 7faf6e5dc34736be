from __future__ import annotations

import asyncio
from datetime import datetime, time

import numpy as np
import pytest

from hipper.media import tones
from hipper.media.engine import MediaEngine, Play, PlaybackFinished, Started
from hipper.media.prompts import (
    CATALOGUE,
    LANGUAGES,
    PROMPT_DIR,
    PromptError,
    personal_assistant_announcement,
    prompt_path,
    say_datetime,
    say_number,
    say_time,
    tone_path,
    voicemail_count,
)
from hipper.media.wavfile import read_wav
from tests.media.phones import Phone, dominant_frequency, rms
from tests.media.test_engine import attach, next_event

FRIDAY_22_JULY_1500 = datetime(2022, 7, 22, 15, 0)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_prompt_is_a_committed_8khz_recording_with_speech(language: str) -> None:
    for key in CATALOGUE[language]:
        samples = read_wav(prompt_path(language, key))  # raises unless 8 kHz mono 16-bit
        assert 0.15 < len(samples) / 8000 < 15, key
        assert rms(samples) > 500, key
    total = sum(p.stat().st_size for p in PROMPT_DIR.rglob("*.wav"))
    assert total < 6_000_000


def test_tones_have_the_right_frequency_and_cadence() -> None:
    ringback = read_wav(tone_path("ringback"))
    assert len(ringback) == 5 * 8000
    assert dominant_frequency(ringback[:8000]) == pytest.approx(425, abs=5)
    assert rms(ringback[8000 + 100 :]) == 0  # 4 s off
    assert dominant_frequency(read_wav(tone_path("beep"))) == pytest.approx(1000, abs=5)
    assert np.array_equal(read_wav(tone_path("beep")), tones.beep())


def test_personal_assistant_announcement_in_dutch_and_english() -> None:
    nl = personal_assistant_announcement("nl", "vacation", FRIDAY_22_JULY_1500, transfer_available=True)
    assert [p.stem for p in nl] == [
        "person_you_are_calling", "is", "reason_vacation", "until", "friday", "n22", "july", "at", "n15", "oclock",
        "press_0_to_transfer",
    ]  # fmt: skip
    assert {p.parent.name for p in nl} == {"nl"}
    en = personal_assistant_announcement("en", "meeting", datetime(2022, 7, 22, 9, 5), now=datetime(2022, 7, 21, 8))
    assert [p.stem for p in en] == [
        "person_you_are_calling", "is", "reason_meeting", "until", "tomorrow", "at", "n9", "oh", "n5", "am",
    ]  # fmt: skip
    with pytest.raises(PromptError, match="reason"):
        personal_assistant_announcement("nl", "napping", None)
    with pytest.raises(PromptError, match="language"):
        prompt_path("de", "is")


def test_numbers_times_and_message_counts() -> None:
    assert say_number("nl", 65) == ["n5", "and", "n60"]
    assert say_number("en", 65) == ["n60", "n5"]
    assert say_number("en", 100) == ["n100"]
    assert say_time("nl", time(9, 30)) == ["n9", "oclock", "n30"]
    assert say_time("en", time(0, 15)) == ["n12", "n15", "am"]
    assert say_datetime("en", FRIDAY_22_JULY_1500) == [
        "friday",
        "the",
        "ord22",
        "of",
        "july",
        "at",
        "n3",
        "oclock",
        "pm",
    ]
    assert [p.stem for p in voicemail_count("en", 1)] == ["you_have", "n1", "new_message"]
    assert [p.stem for p in voicemail_count("nl", 3, saved=1)] == [
        "you_have", "n3", "new_messages", "and", "n1", "saved_message",
    ]  # fmt: skip
    assert [p.stem for p in voicemail_count("nl", 0)] == ["no_new_messages"]


async def test_a_composed_sentence_plays_as_one_stream_to_the_end(engine: MediaEngine) -> None:
    files = voicemail_count("nl", 2)
    expected_seconds = sum(len(read_wav(path)) for path in files) / 8000
    phone = Phone("PCMA")
    endpoint = await attach(engine, phone)
    reply = await engine.execute(Play(endpoint, files))
    assert isinstance(reply, Started)
    finished = await next_event(engine, PlaybackFinished, within=expected_seconds + 10)
    assert finished.playback_id == reply.id
    await asyncio.sleep(0.05)
    speech = [r for r in phone.received if r.packet.payload_type == 8]
    voiced = phone.audio()
    assert rms(voiced) > 300
    assert len(speech) >= int(expected_seconds / 0.02)
    phone.close()
