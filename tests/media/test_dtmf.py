from __future__ import annotations

import pytest

from hipper.media.dtmf import DtmfReceiver, TelephoneEvent, event_payloads
from hipper.media.rtp import RtpPacket
from tests.media.pcap import SIPP_CAPTURES, udp_payloads

KEYS = {"0": "0", "1": "1", "5": "5", "9": "9", "pound": "#", "star": "*"}


@pytest.mark.parametrize(("capture", "digit"), KEYS.items())
def test_each_sipp_capture_yields_exactly_one_digit_despite_three_end_packets(capture: str, digit: str) -> None:
    receiver = DtmfReceiver()
    packets = [RtpPacket.parse(d) for d in udp_payloads(SIPP_CAPTURES / f"dtmf_2833_{capture}.pcap")]
    assert sum(TelephoneEvent.parse(p.payload).end for p in packets) == 3
    digits = [d for p in packets for d in receiver.feed(p.timestamp, p.payload)]
    assert [d.digit for d in digits] == [digit]
    assert digits[0].duration_ms == 280  # 2240 timestamp units at 8 kHz in the capture


def test_same_digit_twice_is_two_events_because_timestamps_differ() -> None:
    receiver = DtmfReceiver()
    got = []
    for start in (1000, 5000):
        for payload in event_payloads("7", 100):
            got += receiver.feed(start, payload)
    assert [(d.digit, d.timestamp) for d in got] == [("7", 1000), ("7", 5000)]


def test_an_event_whose_end_packets_were_all_lost_is_reported_when_the_next_begins() -> None:
    receiver = DtmfReceiver()
    first = [p for p in event_payloads("1", 100) if not TelephoneEvent.parse(p).end]
    got = [d for p in first for d in receiver.feed(160, p)]
    assert got == []
    got = [d for p in event_payloads("2", 100) for d in receiver.feed(2000, p)]
    assert [d.digit for d in got] == ["1", "2"]


def test_sender_packets_updates_then_three_identical_end_packets() -> None:
    payloads = event_payloads("#", duration_ms=100)
    events = [TelephoneEvent.parse(p) for p in payloads]
    assert [e.digit for e in events] == ["#"] * 7
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3


@pytest.mark.parametrize("bad", ["x", "", "12"])
def test_sender_rejects_what_is_not_a_digit(bad: str) -> None:
    with pytest.raises(ValueError, match="DTMF digit"):
        event_payloads(bad)
