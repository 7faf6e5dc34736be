"""8 kHz mono 16-bit WAV in and out, and the atomic recording writer.

The standard library's ``wave`` module is enough for the one format the engine plays and records (telephone
audio); decoding arbitrary uploads (MP3, other rates) is ``audio_files.py``'s job, not the hot path's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hipper.media.g711 import SAMPLE_RATE, Pcm

log = logging.getLogger(__name__)

# One worker: appends to a recording must reach the file in order, and file I/O (write, fsync) must never run
# on the event loop, where it would stall RTP pacing. Small writes, so one thread serves every recording.
_writer_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hipper-media-writer")


class WavFormatError(ValueError):
    """A prompt file that is not 8 kHz mono 16-bit PCM WAV."""


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
