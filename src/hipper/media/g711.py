"""G.711 µ-law (PCMU) and A-law (PCMA) with numpy lookup tables.

Python's ``audioop`` did this in C, but it was deprecated in 3.11 (PEP 594) and removed in Python 3.13, so we
build the tables once at import from the ITU-T G.711 segment rules (the same arithmetic as the public-domain Sun
``g711.c``) and encode/decode a whole 20 ms frame per numpy call. PCMU<->PCMA transcoding is a 256-byte
``bytes.translate`` table, which runs in C without creating numpy arrays on the relay path.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
SAMPLES_PER_FRAME: Final = SAMPLE_RATE * FRAME_MS // 1000  # 160 samples = 160 bytes of G.711

PCMU: Final = "PCMU"
PCMA: Final = "PCMA"
# The code each law uses for a zero sample: what "silence" looks like on the wire.
SILENCE_BYTE: Final = {PCMU: 0xFF, PCMA: 0xD5}

Pcm = npt.NDArray[np.int16]


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # µ-law works on 14-bit magnitudes
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21  # clip, then add the bias (0x84 >> 2)
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude)  # first segment whose end >= magnitude
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (np.minimum(segment, 7) + 1)) & 0x0F))
    table = (code ^ mask).astype(np.uint8)
    # Index by the int16 sample's bit pattern (viewed as uint16), so encoding is a single fancy-index.
    return np.roll(table, -32768)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # A-law works on 13-bit magnitudes
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(segment_ends, magnitude)
    shift = np.where(segment < 2, 1, np.minimum(segment, 7))
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> shift) & 0x0F))
    return np.roll((code ^ mask).astype(np.uint8), -32768)


def _build_ulaw_decode() -> Pcm:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> Pcm:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    base = (code & 0x0F) << 4
    magnitude = np.where(
        segment == 0, base + 8, np.where(segment == 1, base + 0x108, (base + 0x108) << np.maximum(segment - 1, 0))
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_ENCODE: Final = {PCMU: _build_ulaw_encode(), PCMA: _build_alaw_encode()}
_DECODE: Final = {PCMU: _build_ulaw_decode(), PCMA: _build_alaw_decode()}

ULAW_TO_ALAW: Final = _ENCODE[PCMA][_DECODE[PCMU].view(np.uint16)].tobytes()
ALAW_TO_ULAW: Final = _ENCODE[PCMU][_DECODE[PCMA].view(np.uint16)].tobytes()


def encode(pcm: Pcm, codec: str) -> bytes:
    """16-bit linear samples → G.711 bytes (one byte per sample)."""
    return _ENCODE[codec][np.ascontiguousarray(pcm, dtype=np.int16).view(np.uint16)].tobytes()


def decode(payload: bytes, codec: str) -> Pcm:
    """G.711 bytes → 16-bit linear samples."""
    return _DECODE[codec][np.frombuffer(payload, dtype=np.uint8)]


def transcode(payload: bytes, source: str, target: str) -> bytes:
    """PCMU<->PCMA without going through linear arrays (a C-level byte translation)."""
    if source == target:
        return payload
    return payload.translate(ULAW_TO_ALAW if source == PCMU else ALAW_TO_ULAW)


def silence(codec: str, samples: int = SAMPLES_PER_FRAME) -> bytes:
    return bytes([SILENCE_BYTE[codec]]) * samples
