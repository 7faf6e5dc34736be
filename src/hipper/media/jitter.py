"""A jitter buffer for recordings: received audio placed on the recording's timeline by its RTP timestamp.

The conference mixer takes the frames in arrival order (live audio must not wait). A recording has no listener
waiting, so it can afford a fixed delay: each packet is written where its timestamp says it belongs, ``delay``
after the moment the stream's first packet arrived. A packet that arrives late (a sender or network hiccup, the
event loop busy for a moment) then still lands in its place instead of leaving a frame of silence behind it
and shifting everything after it by one frame; a packet that never arrives leaves silence of exactly its length.

Timestamps are trusted only as far as they behave like a clock: a new SSRC, or a timestamp that jumps far from
the stream's previous packet (a phone that restarted its stream, a source switch upstream, the end of a long
silence-suppressed pause), re-anchors the stream at the current write position plus the delay, the same way the
first packet was placed. When the consumer fell behind (an event-loop stall longer than the engine catches up
on), the audio simply waits in the ring, and the stop writes it out; only if even the ring is full is the oldest
audio skipped.
"""

from __future__ import annotations

import numpy as np

from hipper.media.g711 import SAMPLE_RATE, SAMPLES_PER_FRAME, Pcm
from hipper.media.mixer import SILENT_FRAME

# 1 s: nobody hears a recording's delay (the engine skips it at the start and writes the buffered rest at the
# stop), so it can cover what a phone's own stalls and bursts do (Wi-Fi and mobile links deliver late audio in
# bursts) and a stall of a loop that both sends and records (0.7 s seen under CI load with the phones in the
# exchange's process: with 200 ms it left a 520 ms gap). The engine catches up at most a second of recording
# timeline after a stall of its own (engine.RECORDING_CATCH_UP_FRAMES), so a longer delay would buy nothing more.
DELAY_SAMPLES = 8000
DELAY_FRAMES = DELAY_SAMPLES // SAMPLES_PER_FRAME
# A timestamp this far ahead of the stream's previous packet is a jump (or a long silence-suppressed pause,
# where placing the packet afresh puts it in the same place), not audio that belongs that far ahead.
JUMP_SAMPLES = SAMPLE_RATE
# A packet late by less than this is jitter beyond the delay (dropped, its place is written); later is a jump
# (a stream that went on with its timestamps where it had stopped, or restarted lower).
LATE_JUMP_SAMPLES = 2 * DELAY_SAMPLES
# This many late packets in a row mean the sender's clock is slower than ours: re-anchor.
LATE_RUN = 3
# A whole number of frames, so a frame never wraps around the ring: 4 s, for the delay, a jump and stalls.
CAPACITY = 200 * SAMPLES_PER_FRAME
MAX_PACKET_SAMPLES = 2048  # a datagram is read into 2048 bytes: G.711 cannot hold more


class RecordingBuffer:
    """One recorded stream's audio by timeline position; ``pop`` yields 20 ms frames, silence where none came."""

    __slots__ = ("_base_pos", "_base_ts", "_end", "_late_run", "_read", "_ring", "_ssrc", "delay", "dropped_late",
                 "reanchored", "skipped")  # fmt: skip

    def __init__(self, delay: int = DELAY_SAMPLES) -> None:
        self.delay = delay
        self._ring = np.zeros(CAPACITY, dtype=np.int16)
        self._read = 0  # timeline position of the next sample pop() returns
        self._end = 0  # one past the last position written
        self._ssrc = -1
        self._base_ts = 0  # the last accepted packet's timestamp and position: timestamps count from there
        self._base_pos = 0
        self._late_run = 0
        self.dropped_late = 0  # packets that came after their place was written (jitter beyond the delay)
        self.reanchored = 0  # times the stream was placed afresh (first packet, new SSRC, timestamp jump)
        self.skipped = 0  # times the oldest audio was given up because the consumer was a whole ring behind

    def _anchor(self, ssrc: int) -> int:
        self._ssrc = ssrc
        self._late_run = 0
        self.reanchored += 1
        return max(self._end, self._read + self.delay)

    def push(self, pcm: Pcm, ts: int, ssrc: int) -> None:
        count = len(pcm)
        if not count or count > MAX_PACKET_SAMPLES:
            return
        read = self._read
        if ssrc != self._ssrc:
            pos = self._anchor(ssrc)
        else:
            delta = (ts - self._base_ts) & 0xFFFFFFFF
            if delta & 0x80000000:
                delta -= 1 << 32  # an earlier timestamp (reordering, or a jump back)
            pos = self._base_pos + delta
            if delta > JUMP_SAMPLES:
                pos = self._anchor(ssrc)
            elif pos + count <= read:
                self._late_run += 1
                if read - pos < LATE_JUMP_SAMPLES and self._late_run < LATE_RUN:
                    self.dropped_late += 1
                    return
                pos = self._anchor(ssrc)
            else:
                self._late_run = 0
        if pos + count > read + CAPACITY:
            read = self._skip_to(pos + count - CAPACITY)
        self._base_ts, self._base_pos = ts, pos
        if pos < read:  # the part whose place is already written is dropped
            pcm = pcm[read - pos :]
            pos = read
        start = pos % CAPACITY
        first = min(len(pcm), CAPACITY - start)
        self._ring[start : start + first] = pcm[:first]
        if first < len(pcm):
            self._ring[: len(pcm) - first] = pcm[first:]
        self._end = max(self._end, pos + len(pcm))

    def _skip_to(self, position: int) -> int:
        """The consumer is a whole ring behind: give up the oldest audio (cleared, its slots are reused)."""
        position = -(-position // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
        while self._read < position:
            self.pop()
        self.skipped += 1
        return self._read

    def pop(self) -> Pcm:
        """The next 20 ms of the timeline (silence where nothing arrived)."""
        read = self._read
        self._read = read + SAMPLES_PER_FRAME
        if self._end <= read:
            return SILENT_FRAME
        start = read % CAPACITY
        frame = self._ring[start : start + SAMPLES_PER_FRAME].copy()
        self._ring[start : start + SAMPLES_PER_FRAME] = 0  # the slot is reused one ring later
        return frame

    def __len__(self) -> int:
        """Frames from the read position to the last sample received (what a stop still has to write)."""
        return max(0, -(-(self._end - self._read) // SAMPLES_PER_FRAME))
