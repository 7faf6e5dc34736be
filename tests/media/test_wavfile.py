"""The recording writer: appends queued on the writer thread, in order, then committed atomically."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hipper.media.wavfile import AsyncWavWriter, append_all, read_wav


async def test_a_batch_of_appends_reaches_every_recording_even_when_one_fails(tmp_path: Path) -> None:
    broken = await AsyncWavWriter.open(tmp_path / "broken.wav")
    await broken.abort()  # its file is closed: appending to it fails on the writer thread
    good = await AsyncWavWriter.open(tmp_path / "good.wav")
    append_all([(broken, b"\x01\x00" * 160), (good, b"\x02\x00" * 160)])
    append_all([(good, b"\x03\x00" * 160)])
    assert await good.commit() == 320
    assert read_wav(tmp_path / "good.wav").tolist() == [2] * 160 + [3] * 160
    assert await asyncio.to_thread(lambda: sorted(path.name for path in tmp_path.iterdir())) == ["good.wav"]
