"""Tones generated with numpy: the recording beep and the ringback cadence callers hear while a phone rings."""

from __future__ import annotations

import numpy as np

from hipper.media.g711 import SAMPLE_RATE, Pcm


def sine(frequency: float, seconds: float, amplitude: float = 0.3) -> Pcm:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    wave = amplitude * 32767 * np.sin(2 * np.pi * frequency * t)
    # 5 ms fade in/out: a tone that starts mid-cycle clicks.
    fade = min(len(wave) // 2, SAMPLE_RATE // 200)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    tone: Pcm = wave.astype(np.int16)
    return tone


def silence(seconds: float) -> Pcm:
    return np.zeros(int(SAMPLE_RATE * seconds), dtype=np.int16)


def beep() -> Pcm:
    """The "leave your message after the tone" beep: 1 kHz for 0.5 s."""
    return sine(1000.0, 0.5)


def ringback() -> Pcm:
    """One cycle of the European ringback tone (ETSI TR 101 041, used in NL): 425 Hz, 1 s on, 4 s off."""
    return np.concatenate([sine(425.0, 1.0, amplitude=0.25), silence(4.0)])


def busy() -> Pcm:
    """One cycle of the European busy tone: 425 Hz, 0.5 s on, 0.5 s off."""
    return np.concatenate([sine(425.0, 0.5, amplitude=0.25), silence(0.5)])


# The notes of the built-in music on hold, C5–E5–G5–E5 (a configured WAV replaces it: Settings.music_on_hold_file).
MUSIC_ON_HOLD_NOTES = (523.25, 659.25, 783.99, 659.25)


def music_on_hold() -> Pcm:
    """One cycle of the built-in music on hold: a slow arpeggio, each note 0.5 s with a short rest, soft enough
    not to startle; held parties hear it looped (apps/call_control.py)."""
    parts = []
    for frequency in MUSIC_ON_HOLD_NOTES:
        parts += [sine(frequency, 0.5, amplitude=0.2), silence(0.05)]
    return np.concatenate(parts)
