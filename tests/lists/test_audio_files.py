"""Decoding uploads and writing media files (no database: these are the pure and file-system parts)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from hipper.media.audio_files import TELEPHONY_RATE, AudioRejected, decode_upload, pcm16_to_wav, resample
from hipper.store import media_files
from tests.lists.conftest import dominant_frequency, sine


@pytest.mark.parametrize(
    ("format", "subtype", "rate"),
    [
        ("WAV", "PCM_24", 96000),
        ("WAV", "PCM_16", 8000),
        ("WAV", "PCM_16", 6000),  # upsampled, not only down
        ("FLAC", "PCM_16", 16000),
        ("OGG", "VORBIS", 44100),
        ("OGG", "OPUS", 48000),
        ("MP3", "MPEG_LAYER_III", 44100),
    ],
)
def test_every_upload_format_becomes_8_khz_mono_pcm16(format: str, subtype: str, rate: int) -> None:
    audio = decode_upload(sine(700, seconds=1.5, rate=rate, channels=2, format=format, subtype=subtype))
    info = soundfile.info(io.BytesIO(audio.wav))
    assert (info.samplerate, info.channels, info.subtype) == (TELEPHONY_RATE, 1, "PCM_16")
    assert dominant_frequency(audio.wav) == pytest.approx(700, abs=2)
    # MP3 and Opus add encoder delay/padding; the length stays within a few frames.
    assert audio.duration_ms == pytest.approx(1500, abs=60)


def test_resampling_removes_what_8_khz_cannot_carry() -> None:
    # A 6 kHz tone is above the new Nyquist frequency (4 kHz): it must vanish, not fold back to 2 kHz.
    rate = 44100
    t = np.arange(rate) / rate
    out = resample(0.5 * np.sin(2 * np.pi * 6000 * t) + 0.5 * np.sin(2 * np.pi * 1000 * t), rate, 8000)
    spectrum = np.abs(np.fft.rfft(out))
    frequencies = np.fft.rfftfreq(out.size, 1 / 8000)
    at = {f: float(spectrum[np.argmin(np.abs(frequencies - f))]) for f in (1000, 2000)}
    assert at[2000] < at[1000] / 1000
    assert out.size == 8000


def test_unreadable_or_empty_or_long_files_are_rejected() -> None:
    with pytest.raises(AudioRejected, match="not an audio file"):
        decode_upload(b"BEGIN:VCARD\r\nEND:VCARD\r\n")
    with pytest.raises(AudioRejected, match="not an audio file"):
        decode_upload(sine(format="WAV")[:30])  # a truncated header
    with pytest.raises(AudioRejected, match="longer than 3 minutes"):
        decode_upload(sine(seconds=181, rate=8000, format="FLAC"))
    with pytest.raises(AudioRejected, match="longer than"):
        decode_upload(sine(seconds=3, rate=8000), max_seconds=2)
    assert decode_upload(sine(seconds=180, rate=8000, format="FLAC")).duration_ms == 180_000


def test_pcm16_to_wav_round_trip() -> None:
    samples = (np.sin(np.arange(800) / 3) * 10000).astype("<i2")
    data, rate = soundfile.read(io.BytesIO(pcm16_to_wav(samples.tobytes())), dtype="int16")
    assert rate == 8000 and np.array_equal(data, samples)


def test_atomic_write_leaves_only_the_final_file(tmp_path: Path) -> None:
    relative = media_files.new_relative_path("voicemail", 7)
    path = media_files.write_atomically_sync(tmp_path, relative, b"RIFF-data")
    assert path.read_bytes() == b"RIFF-data"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    # Replacing keeps one file: readers see the old or the new content, never a half-written one.
    media_files.write_atomically_sync(tmp_path, relative, b"RIFF-new")
    assert [p.read_bytes() for p in path.parent.iterdir()] == [b"RIFF-new"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    relative = media_files.new_relative_path("greetings", 7)
    with pytest.raises(TypeError):
        media_files.write_atomically_sync(tmp_path, relative, "not bytes")  # type: ignore[arg-type]
    assert [p for p in (tmp_path / "media").rglob("*") if p.is_file()] == []


def test_paths_cannot_leave_the_media_directory(tmp_path: Path) -> None:
    with pytest.raises(media_files.MediaPathError):
        media_files.resolve(tmp_path, "media/../hipper.db")
    with pytest.raises(media_files.MediaPathError):
        media_files.write_atomically_sync(tmp_path, "/etc/passwd", b"x")
