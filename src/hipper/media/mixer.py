"""Conference mixing: every participant hears the sum of the others, never itself ("mix-minus")."""

from __future__ import annotations

from collections import deque

import numpy as np

from hipper.media.g711 import SAMPLES_PER_FRAME, Pcm

# Received frames wait here until the next mixing tick; beyond this many (a sender whose clock runs fast, or a
# burst after a network stall) the oldest go, so a participant's delay cannot grow without bound.
MAX_BUFFERED_FRAMES = 5
SILENT_FRAME: Pcm = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)


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
        self.buffers: dict[str, deque[Pcm]] = {}

    def add(self, participant: str) -> deque[Pcm]:
        buffer: deque[Pcm] = deque(maxlen=MAX_BUFFERED_FRAMES)
        self.buffers[participant] = buffer
        return buffer

    def remove(self, participant: str) -> None:
        self.buffers.pop(participant, None)

    def tick(self) -> dict[str, Pcm]:
        """One 20 ms step: take one frame per participant (silence if none arrived) and mix."""
        names = list(self.buffers)
        frames = [self.buffers[name].popleft() if self.buffers[name] else SILENT_FRAME for name in names]
        return dict(zip(names, mix_minus(frames), strict=True))
