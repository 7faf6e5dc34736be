"""The recordings' jitter buffer: packets placed by RTP timestamp, whatever order and time they arrive in."""

from __future__ import annotations

import numpy as np

from hipper.media.jitter import DELAY_FRAMES, DELAY_SAMPLES, LATE_RUN, RecordingBuffer

SSRC = 0x1234


def frame(value: int, samples: int = 160) -> np.ndarray:
    return np.full(samples, value, dtype=np.int16)


def timeline(buffer: RecordingBuffer, frames: int) -> list[int]:
    """The first sample of each of the next `frames` frames (the tests fill frames with one value each)."""
    return [int(buffer.pop()[0]) for _ in range(frames)]


def test_the_first_packet_is_placed_one_delay_after_its_arrival() -> None:
    buffer = RecordingBuffer()
    buffer.push(frame(7), ts=1000, ssrc=SSRC)
    assert len(buffer) == DELAY_FRAMES + 1
    assert timeline(buffer, DELAY_FRAMES + 2) == [0] * DELAY_FRAMES + [7, 0]
    assert len(buffer) == 0


def test_a_late_packet_lands_in_its_place_instead_of_leaving_a_gap() -> None:
    buffer = RecordingBuffer()
    buffer.push(frame(1), ts=0, ssrc=SSRC)
    timeline(buffer, 1)  # one tick: packet 2 should have come now, but comes three ticks late
    buffer.push(frame(3), ts=320, ssrc=SSRC)
    timeline(buffer, 1)
    buffer.push(frame(4), ts=480, ssrc=SSRC)
    buffer.push(frame(2), ts=160, ssrc=SSRC)  # out of order and late, still within the delay
    assert timeline(buffer, DELAY_FRAMES + 2) == [0] * (DELAY_FRAMES - 2) + [1, 2, 3, 4]
    assert buffer.dropped_late == 0


def test_a_lost_packet_is_silence_of_exactly_its_length() -> None:
    buffer = RecordingBuffer()
    for index in (0, 1, 3, 4):  # packet 2 never comes
        buffer.push(frame(index + 1), ts=160 * index, ssrc=SSRC)
    assert timeline(buffer, DELAY_FRAMES + 5)[DELAY_FRAMES:] == [1, 2, 0, 4, 5]


def test_packets_of_30_ms_are_cut_into_20_ms_frames_in_place() -> None:
    buffer = RecordingBuffer(delay=0)
    audio = np.arange(720, dtype=np.int16)
    for start in range(0, 720, 240):
        buffer.push(audio[start : start + 240], ts=start, ssrc=SSRC)
    out = np.concatenate([buffer.pop() for _ in range(5)])
    assert np.array_equal(out[:720], audio)
    assert not out[720:].any()


def test_a_packet_later_than_the_delay_is_dropped_and_the_rest_keeps_its_place() -> None:
    buffer = RecordingBuffer()
    buffer.push(frame(1), ts=0, ssrc=SSRC)
    timeline(buffer, DELAY_FRAMES + 2)  # frame 1 and the slot of frame 2 are written
    buffer.push(frame(2), ts=160, ssrc=SSRC)  # too late: its slot went out as silence
    assert buffer.dropped_late == 1
    buffer.push(frame(3), ts=320, ssrc=SSRC)
    assert timeline(buffer, 1) == [3]


def test_a_new_ssrc_or_a_timestamp_jump_is_placed_like_a_first_packet() -> None:
    buffer = RecordingBuffer()
    buffer.push(frame(1), ts=0, ssrc=SSRC)
    timeline(buffer, DELAY_FRAMES + 1)
    buffer.push(frame(2), ts=999_999, ssrc=SSRC + 1)  # a restarted stream
    assert timeline(buffer, DELAY_FRAMES + 1) == [0] * DELAY_FRAMES + [2]
    buffer.push(frame(3), ts=999_999 + 40_000 * 160, ssrc=SSRC + 1)  # far ahead: a jump, not early audio
    assert len(buffer) == DELAY_FRAMES + 1
    buffer.push(frame(4), ts=5, ssrc=SSRC + 1)  # far behind (a restart with the same SSRC)
    assert len(buffer) == DELAY_FRAMES + 2
    assert timeline(buffer, DELAY_FRAMES + 2)[-2:] == [3, 4]


def test_a_sender_whose_clock_runs_slow_is_re_anchored_after_a_few_late_packets() -> None:
    buffer = RecordingBuffer()
    buffer.push(frame(1), ts=0, ssrc=SSRC)
    timeline(buffer, DELAY_FRAMES + 5)  # our clock ran on four frames beyond what the sender sent
    for index in range(1, LATE_RUN + 1):
        buffer.push(frame(index + 1), ts=160 * index, ssrc=SSRC)
    assert buffer.dropped_late == LATE_RUN - 1
    assert len(buffer) == DELAY_FRAMES + 1  # the third late packet starts the stream afresh, one delay ahead
    buffer.push(frame(9), ts=160 * (LATE_RUN + 1), ssrc=SSRC)  # and the next one follows it
    assert timeline(buffer, DELAY_FRAMES + 2)[-2:] == [LATE_RUN + 1, 9]


def test_the_ring_wraps_without_losing_or_mixing_audio() -> None:
    buffer = RecordingBuffer()
    written: list[int] = []
    for index in range(1000):  # 20 s: the ring (4 s) goes round several times
        buffer.push(frame(index % 30000 + 1), ts=(2**32 - 5000 + 160 * index) % 2**32, ssrc=SSRC)
        written.extend(timeline(buffer, 1))
    written.extend(timeline(buffer, len(buffer)))
    assert written == [0] * DELAY_FRAMES + [index % 30000 + 1 for index in range(1000)]
    assert DELAY_SAMPLES == DELAY_FRAMES * 160


def test_a_consumer_that_fell_behind_finds_the_audio_waiting_in_order() -> None:
    """The engine's loop stalled for longer than it catches up on: packets are early, not a jump."""
    buffer = RecordingBuffer()
    for index in range(150):  # 3 s arrive while nothing is taken
        buffer.push(frame(index + 1), ts=160 * index, ssrc=SSRC)
    assert buffer.reanchored == 1 and buffer.skipped == 0
    assert timeline(buffer, len(buffer)) == [0] * DELAY_FRAMES + [index + 1 for index in range(150)]


def test_a_consumer_a_whole_ring_behind_loses_the_oldest_audio_only() -> None:
    buffer = RecordingBuffer()
    for index in range(300):  # 6 s: more than the ring holds
        buffer.push(frame(index + 1), ts=160 * index, ssrc=SSRC)
    assert buffer.skipped > 0
    kept = timeline(buffer, len(buffer))
    assert kept == list(range(301 - len(kept), 301))  # the newest audio, in order
