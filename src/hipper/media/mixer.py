"""Conference mixing: every participant hears the sum of the others, never itself ("mix-minus")."""

from __future__ import annotations

from collections import deque

import numpy as np

from hipper.media.g711 import SAMPLES_PER_FRAME, Pcm

# Received frames wait here until the next mixing tick; beyond this many (a sender whose clock runs fast, or a
# burst after a network stall) the oldest go, so a participant's delay cannot grow without bound.
MAX_BUFFERED_FRAMES = 5
SILENT_FRAME: Pcm = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)


class FrameBuffer:
    """Received audio cut into 20 ms frames for a per-tick consumer (a recording or the mixer).

    Phones may send 10, 30 or 60 ms packets (SIPp's own capture uses 30 ms); consumers take exactly one 160-sample
    frame per tick, so packets are re-cut here. Compared by identity, so one endpoint's taps never mix up.
    """

    __slots__ = ("_frames", "_rest")

    def __init__(self, max_frames: int = MAX_BUFFERED_FRAMES) -> None:
        self._frames: deque[Pcm] = deque(maxlen=max_frames)
        self._rest: Pcm | None = None

    def push(self, pcm: Pcm) -> None:
        if self._rest is None and len(pcm) == SAMPLES_PER_FRAME:
            self._frames.append(pcm)  # the common case: one 20 ms packet is one frame
            return
        if self._rest is not None:
            pcm = np.concatenate([self._rest, pcm])
        whole = len(pcm) - len(pcm) % SAMPLES_PER_FRAME
        for start in range(0, whole, SAMPLES_PER_FRAME):
            self._frames.append(pcm[start : start + SAMPLES_PER_FRAME])
        self._rest = pcm[whole:] if whole < len(pcm) else None

    def pop(self) -> Pcm:
        """The oldest frame, or silence when nothing arrived in time (loss, or the remote is not talking)."""
        return self._frames.popleft() if self._frames else SILENT_FRAME

    def __len__(self) -> int:
        return len(self._frames)


def mix_minus(frames: list[Pcm]) -> list[Pcm]:
    """For N equal-length frames, return N frames: frame i = clip(sum of all frames except frame i)."""
    if not frames:
        return []
    stack = np.stack(frames).astype(np.int32)
    total = stack.sum(axis=0)
    return list(np.clip(total[np.newaxis, :] - stack, -32768, 32767).astype(np.int16))


def mix(frames: list[Pcm]) -> Pcm:
    """The plain sum of all frames, clipped to int16 (a recording of both directions of a call)."""
    if len(frames) == 1:
        return frames[0]
    total: Pcm = np.clip(np.sum(np.stack(frames).astype(np.int32), axis=0), -32768, 32767).astype(np.int16)
    return total


class Mixer:
    """Buffers for a set of participants (keyed by endpoint id) and the per-tick mix-minus over them."""

    def __init__(self, mixer_id: str) -> None:
        self.mixer_id = mixer_id
        self.buffers: dict[str, FrameBuffer] = {}

    def add(self, participant: str) -> FrameBuffer:
        buffer = FrameBuffer()
        self.buffers[participant] = buffer
        return buffer

    def remove(self, participant: str) -> None:
        self.buffers.pop(participant, None)

    def tick(self) -> dict[str, Pcm]:
        """One 20 ms step: take one frame per participant (silence if none arrived) and mix."""
        names = list(self.buffers)
        frames = [self.buffers[name].pop() for name in names]
        return dict(zip(names, mix_minus(frames), strict=True))
