"""Audio files in and out of the exchange's one stored format: 8 kHz mono 16-bit PCM WAV.

That is what the telephone network carries (G.711 is 8 kHz, 8-bit companded from 13/14-bit linear), so a
greeting or message stored this way plays without any conversion on the call path. Uploads arrive in whatever
the user's device made — WAV, FLAC, Ogg/Vorbis, Opus, MP3 — and are decoded by libsndfile (through the
`soundfile` wheels), mixed down to mono and resampled here. These functions block: run them with
`hipper.offload.run_cpu`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile

from hipper.media.wavfile import WavFormatError, check_riff

TELEPHONY_RATE = 8000
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_SECONDS = 180
# What a header may claim before anything is decoded (docs/security.md "Resources"). A header is the attacker's
# to write: an 8 KB WAV claiming a 400 MHz rate made the resampler allocate gigabytes. Devices record at 8–96 kHz,
# in mono or stereo; a few more channels are mixed down all the same.
MIN_RATE = 4000
MAX_RATE = 96000
MAX_CHANNELS = 8
# Decoding reads this many frames at a time and mixes them down at once: the multi-channel data never exists
# whole, and the mono result stops growing at the length limit, whatever the header or the stream claims.
BLOCK_FRAMES = 65536
READABLE = "WAV, FLAC, Ogg/Vorbis, Opus or MP3"
# Above this a clip is all but silence: not worth a greeting, and normalising it would only amplify noise.
_SILENCE_PEAK = 1e-4

# Float samples (-1..1): decoding gives float32, which halves the memory of a long clip; math is in float64.
AudioArray = npt.NDArray[np.floating[Any]]


class AudioRejected(ValueError):
    """The upload is not usable audio; `reason` says why in words for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TelephonyAudio:
    wav: bytes
    duration_ms: int


def _next_smooth(n: int) -> int:
    """The smallest 2^a·3^b·5^c >= n: FFT sizes with only small prime factors are the fast ones."""
    best = 2 * n
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def resample(samples: AudioArray, rate_in: int, rate_out: int) -> AudioArray:
    """Band-limited resampling of a mono signal by the FFT (the method of scipy.signal.resample).

    The spectrum of the whole clip is computed, the bins above the new Nyquist frequency are dropped (or zeros
    are appended when going up), and the inverse transform is taken at the new length. Dropping the bins *is*
    the anti-aliasing filter, with an ideal cut-off; a short raised-cosine taper over the top 5 % of the kept
    band keeps the brick-wall edge from ringing audibly. The transform treats the clip as periodic, so the
    clip is padded with at least 100 ms of silence on each side to keep its end from bleeding into its start.
    The padded length is a multiple of rate_in/gcd whose multiplier has only the factors 2, 3 and 5, so the
    output length is exact and both transforms are fast: a 3-minute 48 kHz clip takes well under a second.
    """
    if rate_in == rate_out or samples.size == 0:
        return samples.astype(np.float64, copy=False)
    common = math.gcd(rate_in, rate_out)
    step_in, step_out = rate_in // common, rate_out // common
    pad = rate_in // 10
    blocks = _next_smooth(-(-(samples.size + 2 * pad) // step_in))
    n_in, n_out = blocks * step_in, blocks * step_out
    padded = np.zeros(n_in)
    padded[pad : pad + samples.size] = samples
    spectrum = np.fft.rfft(padded)
    keep = min(spectrum.size, n_out // 2 + 1)
    resized = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    resized[:keep] = spectrum[:keep]
    if rate_out < rate_in:
        taper = max(1, keep // 20)
        resized[keep - taper : keep] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, taper)))
    out = np.fft.irfft(resized, n_out) * (n_out / n_in)
    start = round(pad * rate_out / rate_in)
    return out[start : start + round(samples.size * rate_out / rate_in)]


def to_telephony_wav(samples: AudioArray, rate: int) -> TelephonyAudio:
    """Mono float samples (-1..1) at `rate` as 8 kHz 16-bit PCM WAV bytes."""
    mono = resample(samples, rate, TELEPHONY_RATE)
    # Resampling can overshoot a full-scale input slightly; clip rather than wrap around in int16.
    pcm = np.clip(mono, -1.0, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, TELEPHONY_RATE, subtype="PCM_16", format="WAV")
    return TelephonyAudio(wav=buffer.getvalue(), duration_ms=round(1000 * pcm.size / TELEPHONY_RATE))


def check_header(rate: int, channels: int, frames: int, max_seconds: int) -> None:
    """Refuse what a header claims before a sample is decoded: rate, channels and (when known) the length."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioRejected(f"the sample rate {rate} Hz is not between {MIN_RATE} and {MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioRejected(f"the file has {channels} channels; at most {MAX_CHANNELS} are read")
    # MP3 and some Ogg streams report an estimate (or nothing): the decoded length is bounded again while reading.
    if frames > 0 and frames / rate > max_seconds + 1:
        raise AudioRejected(f"the recording is longer than {max_seconds // 60} minutes")


def _read_mono(sound: soundfile.SoundFile, limit: int, too_long: str) -> npt.NDArray[np.float32]:
    """The file mixed down to mono, block by block; AudioRejected(too_long) once it passes `limit` samples."""
    blocks: list[npt.NDArray[np.float32]] = []
    total = 0
    for block in sound.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
        # Mixing down by averaging keeps a mono source unchanged and cannot clip.
        mono = block.mean(axis=1, dtype=np.float32)
        total += mono.size
        if total > limit:
            raise AudioRejected(too_long)
        blocks.append(mono)
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def decode_upload(data: bytes, max_seconds: int = MAX_SECONDS) -> TelephonyAudio:
    """Decode any format libsndfile reads, refuse what is not audio or too long, return telephony WAV.

    Memory stays bounded whatever the file claims: the container header (RIFF for WAV, `wavfile.check_riff`)
    and libsndfile's view of it are checked first, decoding goes in blocks mixed down to mono at once, and it
    stops at the length limit.
    """
    too_long = f"the recording is longer than {max_seconds // 60} minutes"
    if len(data) > MAX_UPLOAD_BYTES:
        raise AudioRejected(f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        riff = check_riff(data)
    except WavFormatError as exc:
        raise AudioRejected(f"this is not an audio file we can read (its WAV header: {exc}); send {READABLE}") from exc
    if riff is not None:
        check_header(riff.rate, riff.channels, riff.frames, max_seconds)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate = sound.samplerate
            check_header(rate, sound.channels, sound.frames, max_seconds)
            samples = _read_mono(sound, max_seconds * rate, too_long)
    except soundfile.LibsndfileError as exc:
        raise AudioRejected(f"this is not an audio file we can read ({exc.error_string}); send {READABLE}") from exc
    except (RuntimeError, TypeError) as exc:
        raise AudioRejected(f"this is not an audio file we can read; send {READABLE}") from exc
    if samples.size == 0:
        raise AudioRejected("the recording is empty")
    if float(np.max(np.abs(samples))) < _SILENCE_PEAK:
        raise AudioRejected("the recording is silent")
    return to_telephony_wav(samples, rate)


def wav_duration_ms(data: bytes) -> int:
    """Duration of a WAV (or any readable) file; raises AudioRejected when it cannot be read."""
    try:
        info = soundfile.info(io.BytesIO(data))
    except soundfile.LibsndfileError as exc:
        raise AudioRejected(f"this is not an audio file we can read ({exc.error_string})") from exc
    return round(1000 * info.frames / info.samplerate) if info.samplerate else 0


def pcm16_to_wav(pcm: bytes, rate: int = TELEPHONY_RATE) -> bytes:
    """Raw 16-bit little-endian mono samples (as a recorder collects them) as a WAV file."""
    samples = np.frombuffer(pcm, dtype="<i2")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
