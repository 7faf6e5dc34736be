"""RTP and RTCP wire formats (RFC 3550) as small classes with ``parse()`` / ``serialize()``.

The engine's per-packet relay path does not build these objects (it rewrites headers with ``struct`` directly,
see ``engine.py``); these classes are for everything else: tests, tools, the DTMF codec and the players.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
RTCP_HEADER = struct.Struct("!BBH")
# Seconds between 1900-01-01 (NTP epoch) and 1970-01-01 (Unix epoch), for RTCP sender reports.
NTP_EPOCH_OFFSET = 2_208_988_800


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP or RTCP packet."""


@dataclass(slots=True)
class RtpHeaderExtension:
    """RFC 3550 §5.3.1: a profile-defined 16-bit id and a body of whole 32-bit words."""

    profile: int
    data: bytes = b""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension: RtpHeaderExtension | None = None
    # Number of padding octets (including the count octet itself) to append; 0 = no padding (RFC 3550 §5.1).
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER.size:
            raise RtpError(f"RTP packet too short: {len(data)} bytes")
        first, second, sequence_number, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6} is not 2")
        offset = RTP_HEADER.size
        csrc_count = first & 0x0F
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or padding > end - offset - 4 * csrc_count:
                raise RtpError(f"invalid RTP padding length {padding}")
            end -= padding
        if offset + 4 * csrc_count > end:
            raise RtpError("RTP CSRC list runs past the packet end")
        csrc = list(struct.unpack_from(f"!{csrc_count}I", data, offset))
        offset += 4 * csrc_count
        extension = None
        if first & 0x10:
            if offset + 4 > end:
                raise RtpError("RTP header extension runs past the packet end")
            profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            if offset + 4 * words > end:
                raise RtpError("RTP header extension body runs past the packet end")
            extension = RtpHeaderExtension(profile, bytes(data[offset : offset + 4 * words]))
            offset += 4 * words
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError("at most 15 CSRC identifiers fit in an RTP header")
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [RTP_HEADER.pack(first, second, self.sequence_number & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            body = self.extension.data
            if len(body) % 4:
                raise RtpError("an RTP header extension body is a whole number of 32-bit words")
            parts.append(struct.pack("!HH", self.extension.profile, len(body) // 4))
            parts.append(body)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: when RTP and RTCP share a port, RTCP packet types 200–204 sit where RTP has M+PT 72–76."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class ReportBlock:
    """RFC 3550 §6.4.1: reception statistics about one source."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int
    delay_since_last_sr: int

    _STRUCT = struct.Struct("!IB3sIIII")

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = cls._STRUCT.unpack_from(data, offset)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.packets_lost)).to_bytes(3, "big", signed=True)
        return self._STRUCT.pack(
            self.ssrc, self.fraction_lost, lost, self.highest_sequence, self.jitter, self.last_sr,
            self.delay_since_last_sr,
        )  # fmt: skip


@dataclass(slots=True)
class RtcpSenderReport:
    """RFC 3550 §6.4.1 (PT 200)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = struct.pack(
            "!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        ) + b"".join(block.serialize() for block in self.reports)
        return RTCP_HEADER.pack(0x80 | len(self.reports), 200, (len(body) + 4) // 4 - 1) + body


@dataclass(slots=True)
class RtcpReceiverReport:
    """RFC 3550 §6.4.2 (PT 201)."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(block.serialize() for block in self.reports)
        return RTCP_HEADER.pack(0x80 | len(self.reports), 201, (len(body) + 4) // 4 - 1) + body


@dataclass(slots=True)
class RtcpOther:
    """Any other RTCP packet (SDES, BYE, APP, feedback): kept as raw bytes, never an error."""

    packet_type: int
    data: bytes


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpOther


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet. Malformed input raises ``RtpError``; unknown types come back as raw."""
    packets: list[RtcpPacket] = []
    offset = 0
    while offset + RTCP_HEADER.size <= len(data):
        first, packet_type, length_words = RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {first >> 6} is not 2")
        end = offset + 4 * (length_words + 1)
        if end > len(data):
            raise RtpError("RTCP length runs past the datagram end")
        count = first & 0x1F
        if packet_type == 200 and end - offset >= 28 + 24 * count:
            ssrc, ntp, rtp_ts, packet_count, octets = struct.unpack_from("!IQIII", data, offset + 4)
            blocks = [ReportBlock.parse(data, offset + 28 + 24 * i) for i in range(count)]
            packets.append(RtcpSenderReport(ssrc, ntp, rtp_ts, packet_count, octets, blocks))
        elif packet_type == 201 and end - offset >= 8 + 24 * count:
            (ssrc,) = struct.unpack_from("!I", data, offset + 4)
            blocks = [ReportBlock.parse(data, offset + 8 + 24 * i) for i in range(count)]
            packets.append(RtcpReceiverReport(ssrc, blocks))
        else:
            packets.append(RtcpOther(packet_type, bytes(data[offset:end])))
        offset = end
    if offset != len(data):
        raise RtpError("trailing bytes after the last RTCP packet")
    return packets


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) for a Unix time in seconds."""
    seconds = int(unix_time) + NTP_EPOCH_OFFSET
    fraction = int((unix_time % 1.0) * (1 << 32))
    return ((seconds & 0xFFFFFFFF) << 32) | fraction
