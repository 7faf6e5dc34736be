"""A tiny reader for the classic libpcap files SIPp ships: UDP payloads over Ethernet/IPv4.

Hand-written (40 lines) rather than adding dpkt/scapy as a test dependency for one fixed, simple format.
"""

from __future__ import annotations

import struct
from pathlib import Path

SIPP_CAPTURES = Path("/usr/share/sip-tester")


def udp_payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError(f"{path.name}: not a classic pcap file")
    (link_type,) = struct.unpack_from(endian + "I", data, 20)
    link_header = {1: 14, 113: 16, 0: 4}[link_type]  # Ethernet, Linux cooked, BSD loopback
    payloads = []
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        ip = frame[link_header:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue  # only IPv4/UDP
        udp = ip[(ip[0] & 0x0F) * 4 :]
        (udp_length,) = struct.unpack_from("!H", udp, 4)
        payloads.append(bytes(udp[8:udp_length]))
    return payloads
