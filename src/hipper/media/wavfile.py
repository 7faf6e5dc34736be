"""8 kHz mono 16-bit WAV in and out, and the atomic recording writer.

The standard library's ``wave`` module is enough for the one format the engine plays and records (telephone
audio); decoding arbitrary uploads (MP3, other rates) is ``audio_files.py``'s job, not the hot path's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hipper.media.g711 import SAMPLE_RATE, Pcm

log = logging.getLogger(__name__)

# One worker: appends to a recording must reach the file in order, and file I/O (write, fsync) must never run
# on the event loop, where it would stall RTP pacing. Small writes, so one thread serves every recording.
_writer_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hipper-media-writer")


class WavFormatError(ValueError):
    """A prompt file that is not 8 kHz mono 16-bit PCM WAV."""


# WAVE format tags (RFC 2361) whose samples have a fixed width that the header's other fields must agree with.
_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_SAMPLE_BITS = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64), _EXTENSIBLE: (8, 16, 24, 32, 64)}
# A RIFF file names its chunks one after another; a real WAV has a handful before its data.
_MAX_CHUNKS = 64
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the data size open


@dataclass(frozen=True)
class WavHeader:
    format_tag: int
    channels: int
    rate: int
    bits: int
    frames: int  # from the data chunk's declared size; 0 when the writer left it open


def check_riff(data: bytes) -> WavHeader | None:
    """The fmt chunk of a RIFF/WAVE file, checked for consistency before any decoder trusts it; None when the
    data is no RIFF/WAVE file (other formats are libsndfile's to read).

    Raises WavFormatError for a header whose fields contradict each other — a sample width that is none, a
    block or byte rate that does not follow from rate, channels and width — which is how crafted headers
    (issue 11: a 400 MHz rate in an 8 KB file) look. Rate, channel and length limits are the caller's.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    fmt: tuple[int, int, int, int, int, int] | None = None
    for _ in range(_MAX_CHUNKS):
        if offset + 8 > len(data):
            break
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk_id == b"fmt ":
            if size < 16 or offset + 24 > len(data):
                raise WavFormatError("the fmt chunk is truncated")
            fmt = struct.unpack_from("<HHIIHH", data, offset + 8)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavFormatError("the data chunk comes before the fmt chunk")
            return _header(fmt, size)
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise WavFormatError("no fmt chunk")
    raise WavFormatError("no data chunk")


def _header(fmt: tuple[int, int, int, int, int, int], data_size: int) -> WavHeader:
    tag, channels, rate, byte_rate, block_align, bits = fmt
    if channels == 0 or rate == 0:
        raise WavFormatError("no channels or no sample rate")
    widths = _SAMPLE_BITS.get(tag)
    if widths is not None:
        if bits not in widths:
            raise WavFormatError(f"{bits}-bit samples")
        if block_align != channels * bits // 8 or byte_rate != rate * block_align:
            raise WavFormatError("the block size or byte rate does not follow from rate, channels and width")
    frames = 0 if data_size in _UNKNOWN_SIZES or block_align == 0 else data_size // block_align
    return WavHeader(tag, channels, rate, bits, frames)


def read_wav(path: Path) -> Pcm:
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise WavFormatError(
                    f"{path.name}: need 8000 Hz mono 16-bit, got {wav.getframerate()} Hz, "
                    f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit"
                )
            return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    except (wave.Error, EOFError) as error:
        raise WavFormatError(f"{path.name}: not a PCM WAV file ({error})") from error


def write_wav(path: Path, samples: Pcm) -> None:
    """Write a whole WAV atomically (used by scripts and tests; recordings use ``AtomicWavWriter``)."""
    writer = AtomicWavWriter(path)
    writer.append(samples.tobytes())
    writer.commit()


class AtomicWavWriter:
    """Appends PCM to a hidden temp file beside the target, then fsyncs and renames it into place.

    The file therefore appears under its final name only when complete (DESIGN.md: media files are written
    atomically before their database row). Methods block: call them through ``AsyncWavWriter`` on the loop.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp_path = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.temp_path.open("wb")
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 -- lives until commit() or abort()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self.samples = 0

    def append(self, pcm: bytes) -> None:
        self._wav.writeframesraw(pcm)
        self.samples += len(pcm) // 2

    def commit(self) -> None:
        self._wav.close()  # patches the RIFF lengths in the header
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temp_path, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)

    def abort(self) -> None:
        try:
            self._wav.close()
            self._file.close()
        finally:
            self.temp_path.unlink(missing_ok=True)


class AsyncWavWriter:
    """Queues blocking ``AtomicWavWriter`` calls on the single writer thread, in order, without awaiting appends.

    A failed append (disk full) is remembered and raised by ``commit``, which then leaves no file behind.
    """

    def __init__(self, writer: AtomicWavWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.path = writer.path
        self._writer = writer
        self._loop = loop
        self._error: OSError | None = None

    @classmethod
    async def open(cls, path: Path) -> AsyncWavWriter:
        loop = asyncio.get_running_loop()
        return cls(await loop.run_in_executor(_writer_executor, AtomicWavWriter, path), loop)

    def _append(self, pcm: bytes) -> None:
        if self._error is None:
            try:
                self._writer.append(pcm)
            except OSError as error:
                self._error = error

    def _commit(self) -> int:
        if self._error is not None:
            self._writer.abort()
            raise self._error
        self._writer.commit()
        return self._writer.samples

    async def commit(self) -> int:
        """Wait for every queued append, then fsync and rename; returns the number of samples written."""
        return await self._loop.run_in_executor(_writer_executor, self._commit)

    async def abort(self) -> None:
        await self._loop.run_in_executor(_writer_executor, self._writer.abort)


def _append_all(writes: list[tuple[AsyncWavWriter, bytes]]) -> None:
    for writer, pcm in writes:
        try:
            writer._append(pcm)  # an OSError is kept for that recording's commit()
        except Exception:  # one broken recording must not cost the others of the batch their audio
            log.exception("append to %s failed", writer.path)


def append_all(writes: list[tuple[AsyncWavWriter, bytes]]) -> None:
    """Queue appends to many recordings as one job: the media engine hands over a tick's audio at once. Fire and
    forget: the single writer thread keeps the order, and each `commit()` waits behind every queued append."""
    _writer_executor.submit(_append_all, writes)
