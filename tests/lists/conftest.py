"""Fixtures for the user's lists: audio made in the test, and rows written the way call processing writes them."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import soundfile
from fastapi import FastAPI

from hipper.api.state import AppState
from hipper.store import call_logs, voicemails
from hipper.store.models import CallLog, Voicemail


def sine(
    frequency: float = 440.0,
    *,
    seconds: float = 1.0,
    rate: int = 44100,
    channels: int = 1,
    format: str = "WAV",
    subtype: str | None = None,
) -> bytes:
    """A sine tone encoded by libsndfile, as a device would upload it."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * frequency * t)
    samples = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def telephony_wav(frequency: float = 440.0, seconds: float = 1.0) -> bytes:
    return sine(frequency, seconds=seconds, rate=8000, subtype="PCM_16")


def dominant_frequency(data: bytes) -> float:
    samples, rate = soundfile.read(io.BytesIO(data))
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


class Exchange:
    """What call processing does to a user's lists, through the store functions it uses."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._clock = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    def tick(self) -> datetime:
        self._clock += timedelta(minutes=1)
        return self._clock

    async def call(self, user_id: int, kind: str, number: str = "+31612345678", **fields: object) -> CallLog:
        async with self.state.sessions() as session:
            started = self.tick()
            answered = None if kind == "missed" else started + timedelta(seconds=5)
            row = await call_logs.record_call(
                session,
                user_id,
                kind=kind,  # type: ignore[arg-type]
                started_at=started,
                answered_at=answered,
                ended_at=started + timedelta(seconds=65),
                remote_number=number,
                **fields,  # type: ignore[arg-type]
            )
            await session.commit()
            return row

    async def voicemail(self, user_id: int, number: str = "+31612345678", frequency: float = 440.0) -> Voicemail:
        async with self.state.sessions() as session:
            return await voicemails.deposit(
                session,
                self.state.settings.data_dir,
                user_id,
                telephony_wav(frequency),
                received_at=self.tick(),
                duration_ms=1000,
                caller_number=number,
                caller_name="Piet",
                published=self.state.events.published,
            )


@pytest.fixture
def exchange(app: FastAPI) -> Exchange:
    return Exchange(app.state.hipper)
