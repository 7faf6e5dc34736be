from __future__ import annotations

import numpy as np
import pytest

from hipper.media import g711
from hipper.media.g711 import PCMA, PCMU

# Reference values from ITU-T G.711 (and the Sun g711.c every implementation descends from).
KNOWN = {
    PCMU: {0xFF: 0, 0x7F: 0, 0x00: -32124, 0x80: 32124, 0xF0: 120, 0xEF: 132},
    PCMA: {0xD5: 8, 0x55: -8, 0xAA: 32256, 0x2A: -32256, 0xD4: 24},
}


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_decode_known_values(codec: str) -> None:
    codes = bytes(KNOWN[codec])
    assert g711.decode(codes, codec).tolist() == list(KNOWN[codec].values())


def test_encode_known_values() -> None:
    samples = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    assert g711.encode(samples, PCMU).hex() == "ffce4e8000"
    assert g711.encode(samples, PCMA).hex() == "d5fa7aaa2a"


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_every_code_survives_decode_then_encode(codec: str) -> None:
    codes = bytes(range(256))
    again = g711.encode(g711.decode(codes, codec), codec)
    if codec == PCMU:
        # µ-law has two zeros (0x7F = -0, 0xFF = +0); both decode to 0, which encodes as 0xFF.
        assert again == codes.replace(b"\x7f", b"\xff")
    else:
        assert again == codes


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_round_trip_error_stays_within_the_segment_step(codec: str) -> None:
    samples = np.arange(-32768, 32768, 7, dtype=np.int16)
    back = g711.decode(g711.encode(samples, codec), codec).astype(np.int32)
    error = np.abs(back - samples.astype(np.int32))
    # Logarithmic companding: the error grows with the magnitude, about 1/32 of it at worst (half a step of
    # 16 steps per segment), with a floor for the smallest segments.
    assert np.all(error <= np.maximum(16, np.abs(samples.astype(np.int32)) // 16))


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_matches_audioop_bit_for_bit_where_audioop_still_exists(codec: str) -> None:
    audioop = pytest.importorskip("audioop")  # gone in Python 3.13; g711.py is its replacement
    everything = np.arange(-32768, 32768, dtype=np.int16)
    lin2 = audioop.lin2ulaw if codec == PCMU else audioop.lin2alaw
    to_lin = audioop.ulaw2lin if codec == PCMU else audioop.alaw2lin
    assert g711.encode(everything, codec) == lin2(everything.tobytes(), 2)
    assert g711.decode(bytes(range(256)), codec).tobytes() == to_lin(bytes(range(256)), 2)


def test_transcoding_equals_decode_then_encode() -> None:
    codes = bytes(range(256))
    assert g711.transcode(codes, PCMU, PCMA) == g711.encode(g711.decode(codes, PCMU), PCMA)
    assert g711.transcode(codes, PCMA, PCMU) == g711.encode(g711.decode(codes, PCMA), PCMU)
    assert g711.transcode(codes, PCMA, PCMA) is codes


def test_silence_is_the_zero_code_of_each_law() -> None:
    assert g711.decode(g711.silence(PCMU), PCMU).max() == 0
    assert np.abs(g711.decode(g711.silence(PCMA), PCMA)).max() == 8  # A-law has no exact zero
    assert len(g711.silence(PCMA)) == 160
