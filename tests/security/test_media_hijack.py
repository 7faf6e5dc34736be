"""Issue 11, critical 2: RTP hijack. A third party spraying the RTP port range must neither hear a call nor cut
a party off; ports must not be predictable; the NAT case (media from another address than the SDP's) still works.

The attacker sends from 127.0.0.66 (another host on the loopback network); the phones' SIP and RTP come from
127.0.0.1. On today's code an endpoint latched onto the first packet from anyone, so the spray captured the
call's media.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct

from prometheus_client import REGISTRY

from hipper.media.engine import CreateEndpoint, EndpointCreated, Release
from tests.calls.conftest import Exchange, exchange, phone, place_call, scenario  # noqa: F401 - the fixture
from tests.security.calls_support import still_serves

ATTACKER = "127.0.0.66"
# Bob plays speech from the capture once the call is up (tests/calls/test_traps.py, the NAT test).
TALK_BACK = """
  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap" />
    </action>
  </nop>
"""


def rejected_total() -> float:
    return REGISTRY.get_sample_value("hipper_rtp_rejected_packets_total") or 0.0


class Sprayer:
    """RTP (PCMA silence) to every even port of the exchange's range, every 20 ms, from the attacker's host;
    whatever comes back is what the attacker overhears."""

    def __init__(self, first: int, last: int) -> None:
        self.ports = range(first + first % 2, last, 2)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ATTACKER, 0))
        self.sock.setblocking(False)
        self.sent = 0
        self.overheard = 0

    async def run(self) -> None:
        seq = 0
        while True:
            seq = (seq + 1) & 0xFFFF
            packet = struct.pack("!BBHII", 0x80, 8, seq, seq * 160, 0x5EC0) + b"\xd5" * 160
            for port in self.ports:
                with contextlib.suppress(OSError):
                    self.sock.sendto(packet, ("127.0.0.1", port))
                    self.sent += 1
            while True:
                try:
                    self.sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # ICMP port unreachable for ports nobody holds
                self.overheard += 1
            await asyncio.sleep(0.02)


async def test_a_spray_of_the_port_range_neither_hears_nor_hijacks_a_call(exchange: Exchange) -> None:  # noqa: F811
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    # Bob is behind NAT (Contact and SDP name 192.0.2.1, unreachable): his media may latch from where his SIP
    # came from (127.0.0.1), never from the attacker.
    natted = scenario("callee.xml", ring_ms=300, contact_host="192.0.2.1", media_host="192.0.2.1", after_ack=TALK_BACK)
    bob = await phone(exchange, "bob", "bob", natted, contact_host="192.0.2.1")
    sprayer = Sprayer(exchange.settings.rtp_port_min, exchange.settings.rtp_port_max)
    rejected_before = rejected_total()
    spray = asyncio.create_task(sprayer.run())
    try:
        alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=2500)
        await alice.succeeded()
        await bob.succeeded()
    finally:
        spray.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await spray
        sprayer.sock.close()
    call = await exchange.next_call()
    assert call.answered
    assert sprayer.sent > 1000
    assert sprayer.overheard == 0, "the attacker received the call's audio"
    # Both parties kept their media: Bob's (from 127.0.0.1, not his SDP's address) reached Alice, hers him.
    assert call.media["callee_packets_received"] > 50
    assert call.media["caller_packets_received"] > 50
    assert call.media["caller_packets_sent"] > 50
    assert rejected_total() - rejected_before > 100  # counted (and logged: media.rtp_rejected)
    await still_serves(exchange)


async def test_consecutive_calls_get_unpredictable_ports(exchange: Exchange) -> None:  # noqa: F811
    """Handed out in order, one call's port told an attacker the next call's; now they are drawn at random."""
    ports: list[int] = []
    endpoints: list[str] = []
    for _ in range(12):
        created = await exchange.media.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        ports.append(created.local_port)
        endpoints.append(created.endpoint_id)
    for endpoint_port in ports:
        assert exchange.settings.rtp_port_min <= endpoint_port < exchange.settings.rtp_port_max
    span = exchange.settings.rtp_port_max - exchange.settings.rtp_port_min
    steps = {(b - a) % span for a, b in itertools.pairwise(ports)}
    assert len(steps) > 3, f"ports follow a pattern: {ports}"
    assert len(set(ports)) == len(ports)
    for endpoint_id in endpoints:
        await exchange.media.execute(Release(endpoint_id))
    await still_serves(exchange)
