"""Greeting uploads cannot blow up the exchange's memory (issue 11, critical 6).

An 8 KB WAV whose header claims a 400 MHz sample rate was accepted, and its resampling allocated gigabytes (two
uploads took a node from 145 MB to 3.9 GB). Crafted headers — absurd rate, channel count, sample width, a
length far beyond the limit — are refused with a 422 before decoding, and the exchange's peak memory stays
where it was; a real greeting is still accepted afterwards.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import httpx
import numpy as np
import soundfile

from tests.support.exchange_process import exchange_process

# Peak memory (VmHWM) the whole attack may add to the exchange: the refused files are a few KB each.
MAX_GROWTH_KIB = 64 * 1024


def wav(rate: int, channels: int = 1, bits: int = 16, data_bytes: int | None = None, payload: int = 8000) -> bytes:
    """A RIFF/WAVE file with this header (fields consistent, as a crafted one would be) and `payload` bytes."""
    block = channels * bits // 8
    samples = (np.random.default_rng(1).normal(0, 3000, payload // 2)).astype("<i2").tobytes()[:payload]
    declared = len(samples) if data_bytes is None else data_bytes
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def real_greeting() -> bytes:
    t = np.arange(16000) / 16000
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


CRAFTED = {
    "400 MHz rate": wav(400_000_000),
    "1 GHz rate, stereo": wav(1_000_000_000, channels=2),
    "1000 channels": wav(48000, channels=1000),
    "claims ten hours": wav(48000, data_bytes=48000 * 2 * 36000),
    "48-bit samples": wav(48000, bits=48),
}


async def test_crafted_wav_headers_are_refused_before_decoding(tmp_path: Path) -> None:
    async with exchange_process(tmp_path, users=["alice"]) as exchange, httpx.AsyncClient(timeout=60) as http:
        token = await exchange.login(http, "alice")
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{exchange.url}/api/v1/me/greetings"
        before = exchange.memory_kib("VmHWM")
        for name, data in CRAFTED.items():
            for _ in range(2):  # twice: the report's two uploads
                response = await http.post(url, files={"file": ("greeting.wav", data, "audio/wav")}, headers=headers)
                assert response.status_code == 422, (name, response.status_code, response.text)
        growth = exchange.memory_kib("VmHWM") - before
        assert growth < MAX_GROWTH_KIB, f"peak memory grew by {growth // 1024} MiB"
        # Still serving, and a real greeting goes in.
        good = await http.post(url, files={"file": ("hello.wav", real_greeting(), "audio/wav")}, headers=headers)
        assert good.status_code == 201, good.text
        assert good.json()["duration_ms"] == 1000
