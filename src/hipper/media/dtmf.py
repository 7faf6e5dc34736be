"""RFC 4733 telephone-event: receive (with end-packet de-duplication) and send.

A digit is one *event*: every packet of it carries the same RTP timestamp (the event start) and a growing
duration; the end packet (E bit) is sent three times (RFC 4733 §2.5.1.4). A receiver therefore keys events by
timestamp and reports each timestamp once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

EVENT_CODES: Final = "0123456789*#ABCD"
_PAYLOAD = struct.Struct("!BBH")
END_REPEATS: Final = 3


def digit_to_event(digit: str) -> int:
    code = EVENT_CODES.find(digit.upper())
    if len(digit) != 1 or code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in RTP timestamp units (1/8000 s for 8 kHz audio)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < _PAYLOAD.size:
            raise ValueError(f"telephone-event payload too short: {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF)

    @property
    def digit(self) -> str | None:
        return EVENT_CODES[self.event] if self.event < len(EVENT_CODES) else None


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str
    duration_ms: int
    timestamp: int


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, each reported once."""

    __slots__ = ("_open_event", "_open_timestamp", "_reported")

    def __init__(self) -> None:
        self._open_timestamp: int | None = None
        self._open_event: TelephoneEvent | None = None
        # Recently reported event timestamps: the 2nd and 3rd end packets (and late retransmissions) carry one.
        self._reported: list[int] = []

    def feed(self, timestamp: int, payload: bytes) -> list[Digit]:
        """Feed one telephone-event packet; returns the digits that completed (usually none or one)."""
        try:
            event = TelephoneEvent.parse(payload)
        except ValueError:
            return []
        if event.digit is None or timestamp in self._reported:
            return []
        completed: list[Digit] = []
        if self._open_timestamp is not None and self._open_timestamp != timestamp and self._open_event is not None:
            # A new event began before the previous one's end packets arrived (all three lost): the previous
            # key was still pressed, so report it with the duration seen so far.
            completed.append(self._report(self._open_timestamp, self._open_event))
        if event.end:
            completed.append(self._report(timestamp, event))
        else:
            self._open_timestamp, self._open_event = timestamp, event
        return completed

    def _report(self, timestamp: int, event: TelephoneEvent) -> Digit:
        self._open_timestamp = self._open_event = None
        self._reported.append(timestamp)
        del self._reported[:-8]
        assert event.digit is not None
        return Digit(event.digit, event.duration // 8, timestamp)


def event_payloads(digit: str, duration_ms: int = 100, volume: int = 10, packet_ms: int = 20) -> list[bytes]:
    """The payloads of one digit, one per packet interval: updates, then the end packet three times.

    The caller sends them all with the same RTP timestamp (the event start) and the marker bit on the first.
    """
    if not 40 <= duration_ms <= 5000:
        raise ValueError("DTMF duration_ms must be between 40 and 5000")
    code = digit_to_event(digit)
    step = packet_ms * 8
    total = duration_ms * 8
    payloads = [TelephoneEvent(code, False, volume, d).serialize() for d in range(step, total, step)]
    end = TelephoneEvent(code, True, volume, total).serialize()
    return payloads + [end] * END_REPEATS
