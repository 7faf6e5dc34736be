"""One endpoint's fault never stops the shared ticker or another endpoint (issue 11, critical 1); the latching
rules (strict source) and the SDP checks at the engine's boundary."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import REGISTRY

from hipper.media import g711
from hipper.media.engine import (
    Connect,
    CreateEndpoint,
    EndpointCreated,
    MediaEngine,
    MediaError,
    Release,
    RtpTimeout,
    SetRemoteSdp,
    StartSending,
)
from hipper.media.rtp import RtpPacket
from hipper.media.sdp import build_offer
from tests.media.phones import Phone
from tests.media.test_engine import attach, audio_packets, next_event, until
from tests.support.ports import engine_range


async def wait_for_stat(engine: MediaEngine, endpoint: str, name: str, value: int) -> None:
    async with asyncio.timeout(3):
        while engine.stats(endpoint)[name] < value:  # noqa: ASYNC110 - the engine's reader counts them
            await asyncio.sleep(0.01)


async def wait_for_packets(phone: Phone, count: int, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while len(audio_packets(phone)) < count:  # noqa: ASYNC110 - packets arrive on the phone's protocol
            await asyncio.sleep(0.01)


async def test_a_fault_in_one_endpoint_drops_it_and_the_ticker_goes_on(engine: MediaEngine) -> None:
    victim, bystander = Phone(), Phone()
    broken = await attach(engine, victim)
    await attach(engine, bystander)
    await wait_for_packets(bystander, 2)
    errors_before = REGISTRY.get_sample_value("hipper_media_endpoint_errors_total") or 0.0
    # Fault injection: no wire input reaches this any more (the SDP is checked), so break the endpoint directly
    # the way `m=audio 65535` once did (sendto raises OverflowError, which is no OSError).
    engine._endpoints[broken].remote = ("127.0.0.1", 70000)
    timeout = await next_event(engine, RtpTimeout)
    assert (timeout.endpoint_id, timeout.silent_seconds) == (broken, 0.0)  # its call learns and ends
    with pytest.raises(MediaError):
        engine.stats(broken)  # dropped
    assert (REGISTRY.get_sample_value("hipper_media_endpoint_errors_total") or 0.0) == errors_before + 1
    before = len(audio_packets(bystander))
    await wait_for_packets(bystander, before + 10)  # the ticker still serves everyone else
    assert engine.alive
    victim.close()
    bystander.close()


def intruder_socket(host: str = "127.0.0.77") -> socket.socket:
    """RTP from another host of the loopback network (a third party on the internet, as the engine sees it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def overheard(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except OSError:  # nothing more (or an ICMP error)
            return count
        count += 1


async def test_only_the_signalled_host_latches(engine: MediaEngine) -> None:
    phone = Phone()
    await phone.open()
    created = await engine.execute(CreateEndpoint(remote_sdp=phone.offer("127.0.0.1"), signalling_host="127.0.0.1"))
    assert isinstance(created, EndpointCreated)
    endpoint = created.endpoint_id
    await engine.execute(StartSending(endpoint))  # our answer went out: a latched intruder would hear us
    phone.engine_address = ("127.0.0.1", created.local_port)
    intruder = intruder_socket()
    packet = RtpPacket(0, 1, 160, 0x5EC0, g711.silence("PCMU")).serialize()
    for _ in range(5):  # before the phone's first packet: on today's code the first of these latched
        intruder.sendto(packet, phone.engine_address)
    await wait_for_stat(engine, endpoint, "packets_rejected", 5)
    assert engine.stats(endpoint)["packets_received"] == 0
    phone.send(g711.silence("PCMU"))
    await wait_for_stat(engine, endpoint, "packets_received", 1)
    assert overheard(intruder) == 0
    phone.close()
    intruder.close()


async def test_behind_nat_only_the_sip_host_latches_and_only_new_sdp_moves_it(engine: MediaEngine) -> None:
    phone, stranger = Phone(), Phone()
    await phone.open()
    created = await engine.execute(CreateEndpoint(remote_sdp=phone.offer("192.0.2.1"), signalling_host="127.0.0.1"))
    assert isinstance(created, EndpointCreated)
    endpoint = created.endpoint_id
    await engine.execute(StartSending(endpoint))  # our answer went out: a latched intruder would hear us
    phone.engine_address = ("127.0.0.1", created.local_port)
    intruder = intruder_socket()
    intruder.sendto(RtpPacket(0, 1, 160, 0x5EC0, g711.silence("PCMU")).serialize(), phone.engine_address)
    await wait_for_stat(engine, endpoint, "packets_rejected", 1)  # not the SIP's host: no latching behind NAT
    phone.send(g711.silence("PCMU"))  # from 127.0.0.1, the SIP's host: latched although the SDP said 192.0.2.1
    await wait_for_packets(phone, 3)
    # Another port, even of the same host, cannot take over mid-call …
    await stranger.open()
    stranger.engine_address = phone.engine_address
    stranger.send(g711.silence("PCMU"))
    await wait_for_stat(engine, endpoint, "packets_rejected", 2)
    assert engine.stats(endpoint)["packets_received"] == 1
    # … until new SDP (a re-INVITE from the phone that moved) names it.
    await engine.execute(SetRemoteSdp(endpoint, stranger.offer("127.0.0.1")))
    stranger.send(g711.silence("PCMU"))
    await wait_for_packets(stranger, 3)
    assert overheard(intruder) == 0
    phone.close()
    stranger.close()
    intruder.close()


@pytest.mark.parametrize(
    "bad",
    ["m=audio 65535 RTP/AVP 0", "m=audio 99999 RTP/AVP 0", "m=audio 4000 RTP/AVP 0 128", "m=audio 4000 RTP/AVP ٠"],
)
async def test_a_bad_offer_takes_no_port(engine: MediaEngine, bad: str) -> None:
    offer = f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{bad}\r\n"
    free = len(engine._free_ports)
    with pytest.raises(MediaError, match="remote_sdp"):
        await engine.execute(CreateEndpoint(remote_sdp=offer))
    assert len(engine._free_ports) == free


async def test_a_released_port_rests_before_it_is_drawn_again() -> None:
    """The far end of an ended call may still be sending to its port; a new endpoint drawn on that port would let
    the old stream latch (same host) before the new call's peer. So a released pair is drawn again only when no
    other is free (three pairs here: the two others first, then the resting one rather than refusing)."""
    base = engine_range()
    media = MediaEngine(port_min=base, port_max=base + 6, rtp_timeout_seconds=5.0)

    async def new_port() -> tuple[str, int]:
        created = await media.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        return created.endpoint_id, created.local_port

    async with media:
        first, released = await new_port()
        await media.execute(Release(first))
        others = {(await new_port())[1] for _ in range(2)}
        assert released not in others and len(others) == 2
        assert (await new_port())[1] == released
        with pytest.raises(MediaError):
            await new_port()


async def test_a_resting_pair_is_drawn_before_refusing_when_the_free_ones_are_held_elsewhere() -> None:
    """Two pairs: one resting after its release, the other bound by another process. A new endpoint gets the
    resting pair rather than a refusal (503 to a caller)."""
    base = engine_range()
    media = MediaEngine(port_min=base, port_max=base + 4, rtp_timeout_seconds=5.0)
    async with media:
        created = await media.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        await media.execute(Release(created.endpoint_id))
        other = base + 2 if created.local_port == base else base
        squatters = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for offset, squatter in enumerate(squatters):
                squatter.bind(("127.0.0.1", other + offset))
            again = await media.execute(CreateEndpoint())
            assert isinstance(again, EndpointCreated) and again.local_port == created.local_port
        finally:
            for squatter in squatters:
                squatter.close()


async def test_a_reused_pair_relays_nothing_from_the_previous_calls_peer() -> None:
    """A released pair is kept open and reused by a later call (media/engine.py): what the previous call's phone
    sent before the reuse is drained, and what it sends after is refused by the new call's latching — nothing of
    it reaches the new call's other side, not even before the new caller's first packet."""
    base = engine_range()
    async with MediaEngine(port_min=base, port_max=base + 4) as engine:  # two pairs: the released one is reused
        old_phone = intruder_socket("127.0.0.77")
        old_port = old_phone.getsockname()[1]
        first = await engine.execute(
            CreateEndpoint(
                remote_sdp=build_offer("127.0.0.77", old_port, ("PCMU",)).serialize(), signalling_host="127.0.0.77"
            )
        )
        assert isinstance(first, EndpointCreated)
        await engine.execute(StartSending(first.endpoint_id))
        old_audio, new_audio = b"\x01" * 160, b"\x02" * 160
        packet = RtpPacket(0, 1, 160, 0x01D, old_audio).serialize()
        old_phone.sendto(packet, ("127.0.0.1", first.local_port))
        await wait_for_stat(engine, first.endpoint_id, "packets_received", 1)  # latched: the old call's peer
        await engine.execute(Release(first.endpoint_id))
        # The next call: its callee's endpoint takes the other pair, its caller's the released one.
        callee, caller = Phone(), Phone()
        b = await attach(engine, callee)
        await caller.open()
        old_phone.sendto(packet, ("127.0.0.1", first.local_port))  # in the socket when the new call takes it
        created = await engine.execute(CreateEndpoint(remote_sdp=caller.offer(), signalling_host="127.0.0.1"))
        assert isinstance(created, EndpointCreated) and created.local_port == first.local_port
        a = created.endpoint_id
        caller.engine_address = ("127.0.0.1", created.local_port)
        await engine.execute(Connect(a, b))
        await engine.execute(StartSending(a))
        for _ in range(3):
            old_phone.sendto(packet, ("127.0.0.1", created.local_port))
        await wait_for_stat(engine, a, "packets_rejected", 3)
        caller.send(new_audio)
        await until(lambda: any(r.packet.payload == new_audio for r in callee.received))
        await asyncio.sleep(0.1)  # anything else relayed would have arrived with it
        assert not any(r.packet.payload == old_audio for r in callee.received)
        assert engine.stats(a)["packets_rejected"] == 3  # the packet from before the reuse was drained, not read
        assert engine.stats(a)["packets_received"] == 1
        caller.close()
        callee.close()
        old_phone.close()


async def test_a_released_pair_is_reused_once_rested() -> None:
    """Released sockets are kept open and drawn again after their rest (no socket, bind, sizing or reader
    registration per call); with no room to keep them, they are closed as before."""
    base = engine_range()
    async with MediaEngine(port_min=base, port_max=base + 200, port_rest_seconds=0.0) as engine:
        ports, sockets = [], []
        for _ in range(3):
            created = await engine.execute(CreateEndpoint())
            assert isinstance(created, EndpointCreated)
            ports.append(created.local_port)
            sockets.append(engine._endpoints[created.endpoint_id].rtp)
            await engine.execute(Release(created.endpoint_id))
        assert len(set(ports)) == 1 and len({id(sock) for sock in sockets}) == 1  # 99 other pairs were free
        assert sockets[0].fileno() != -1
    assert sockets[0].fileno() == -1  # closed when the engine stops
    async with MediaEngine(port_min=base, port_max=base + 200, port_rest_seconds=0.0, pooled_pairs=0) as engine:
        created = await engine.execute(CreateEndpoint())
        assert isinstance(created, EndpointCreated)
        rtp = engine._endpoints[created.endpoint_id].rtp
        await engine.execute(Release(created.endpoint_id))
        assert rtp.fileno() == -1


def test_the_socket_pool_takes_at_most_an_eighth_of_a_low_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Idle pairs hold two sockets each: under a low open-file limit (a soft 1,024 nobody raised) 1,024 pairs would
    # take every descriptor the phones on TCP and the live calls need.
    import resource

    from hipper.media import engine

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert engine.pooled_pairs_for_open_files() == 64  # 128 sockets: an eighth
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1_048_576, 1_048_576))
    assert engine.pooled_pairs_for_open_files() == engine.POOLED_PAIRS
