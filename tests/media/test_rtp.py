from __future__ import annotations

import itertools

import pytest

from hipper.media.rtp import (
    ReportBlock,
    RtcpOther,
    RtcpReceiverReport,
    RtcpSenderReport,
    RtpError,
    RtpHeaderExtension,
    RtpPacket,
    is_rtcp,
    parse_rtcp,
)
from tests.media.pcap import SIPP_CAPTURES, udp_payloads


def test_sipp_g711a_capture_parses_as_one_continuous_pcma_stream() -> None:
    packets = [RtpPacket.parse(data) for data in udp_payloads(SIPP_CAPTURES / "g711a.pcap")]
    assert len(packets) == 236
    assert {p.payload_type for p in packets} == {8}
    assert len({p.ssrc for p in packets}) == 1
    assert packets[0].marker
    for previous, current in itertools.pairwise(packets):
        assert current.sequence_number == (previous.sequence_number + 1) & 0xFFFF
        assert current.timestamp - previous.timestamp == len(previous.payload) == 240  # 30 ms packets
    # Serialising what we parsed gives back the captured bytes exactly.
    for data in udp_payloads(SIPP_CAPTURES / "g711a.pcap"):
        assert RtpPacket.parse(data).serialize() == data


@pytest.mark.parametrize("key", ["0", "5", "9", "pound", "star"])
def test_sipp_dtmf_captures_parse_and_round_trip(key: str) -> None:
    datagrams = udp_payloads(SIPP_CAPTURES / f"dtmf_2833_{key}.pcap")
    packets = [RtpPacket.parse(data) for data in datagrams]
    assert {p.payload_type for p in packets} == {101}
    assert len({p.timestamp for p in packets}) == 1  # one event, one timestamp
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert [p.serialize() for p in packets] == datagrams


def test_csrc_extension_and_padding_round_trip() -> None:
    packet = RtpPacket(
        payload_type=0,
        sequence_number=65535,
        timestamp=0xFFFFFFF0,
        ssrc=0x12345678,
        payload=b"\xff" * 160,
        marker=True,
        csrc=[1, 2, 3],
        extension=RtpHeaderExtension(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=4,
    )
    data = packet.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert len(data) == 12 + 12 + 4 + 4 + 160 + 4
    assert data[-1] == 4
    assert RtpPacket.parse(data) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00",
        b"\x40" + bytes(11),  # version 1
        b"\x8f" + bytes(11),  # 15 CSRCs announced, none present
        b"\x90" + bytes(11) + b"\x00\x00\x00\x05",  # extension longer than the packet
        b"\xa0" + bytes(11) + b"\x00\x00\x00\x09",  # padding longer than the packet
        b"\xa0" + bytes(11) + b"\x00\x00\x00\x00",  # padding count 0
    ],
)
def test_malformed_rtp_raises_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_rtcp_sender_and_receiver_reports_round_trip_in_a_compound_packet() -> None:
    block = ReportBlock(
        ssrc=7, fraction_lost=12, packets_lost=-3, highest_sequence=70000, jitter=40, last_sr=1, delay_since_last_sr=2
    )
    sender = RtcpSenderReport(1, 0x0123456789ABCDEF, 160, 50, 8000, [block])
    receiver = RtcpReceiverReport(2, [block, block])
    sdes = b"\x81\xca\x00\x02" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00"
    compound = sender.serialize() + receiver.serialize() + sdes
    assert is_rtcp(compound)
    parsed = parse_rtcp(compound)
    assert parsed[0] == sender
    assert parsed[1] == receiver
    assert parsed[2] == RtcpOther(202, sdes)


@pytest.mark.parametrize("data", [b"\x80\xc8\x00\x06", b"\x40\xc8\x00\x00", b"\x80\xc9\x00\x00\x00"])
def test_malformed_rtcp_raises_rtp_error_never_anything_else(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtcp(data)
