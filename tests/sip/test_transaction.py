"""Transaction timers (RFC 3261 §17) over real UDP sockets, with T1 shortened to keep the test quick."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hipper.sip.message import URI, Headers, Request, Response, parse_message
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ServerTransaction, TimerConfig
from hipper.sip.transport import UDP_BUFFER_BYTES, Peer
from tests.sip.conftest import RawClient

FAST = TimerConfig(t1=0.02, t2=0.08, t4=0.1)


class Busy:
    """A call handler that answers every INVITE 486, or rings and waits for CANCEL when told to."""

    def __init__(self, ring: bool = False) -> None:
        self.ring = ring
        self.acks: list[Request] = []

    def on_request(self, tx: ServerTransaction) -> None:
        tx.respond(tx.response(180 if self.ring else 486))

    def on_ack(self, request: Request, peer: Peer) -> None:
        self.acks.append(request)

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None:
        tx.respond(tx.response(487))

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        pass


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    sip = SipStack(timers=FAST)
    await sip.start("127.0.0.1", 0, tcp=False)
    yield sip
    await sip.close()


def options(method: str = "OPTIONS") -> Request:
    headers = Headers()
    for name, value in (
        ("From", "<sip:a@hipper.test>;tag=f1"),
        ("To", "<sip:b@hipper.test>"),
        ("Call-ID", f"{method}-timers"),
        ("CSeq", f"1 {method}"),
    ):
        headers.add(name, value)
    return Request(method, URI.parse("sip:b@127.0.0.1"), headers)


async def arrivals(client: RawClient, until: float) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    deadline = loop.time() + until
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(left):
                await client.queue.get()
        except TimeoutError:
            break
        times.append(loop.time())
    return times


async def test_non_invite_timer_e_backs_off_to_t2_and_timer_f_gives_408(stack: SipStack, udp_client: RawClient) -> None:
    tx = stack.send_request(options(), Peer("udp", "127.0.0.1", udp_client.port))
    times = await arrivals(udp_client, FAST.timeout + 0.2)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.014 < gaps[0] < 0.07 and 0.028 < gaps[1] < 0.11  # T1, 2·T1 (with room for a busy loop)
    assert all(gap < FAST.t2 + 0.05 for gap in gaps)  # capped at T2
    assert 10 <= len(times) <= 20
    final = await tx.final
    assert final.status == 408


async def test_invite_timer_a_doubles_and_timer_b_gives_408(stack: SipStack, udp_client: RawClient) -> None:
    tx = stack.send_request(options("INVITE"), Peer("udp", "127.0.0.1", udp_client.port))
    times = await arrivals(udp_client, FAST.timeout + 0.2)
    gaps = [(b - a) / FAST.t1 for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, [1, 2, 4, 8, 16], strict=False):  # Timer A doubles without a cap
        assert 0.7 * expected <= gap <= 1.5 * expected + 0.5, gaps
    # Sent at 0, 1, 3, 7, 15, 31 and 63 × T1; Timer B at 64 × T1 may beat the last one when the loop is busy.
    assert len(times) in (6, 7)
    assert (await tx.final).status == 408


async def test_provisional_stops_invite_retransmissions(stack: SipStack, udp_client: RawClient) -> None:
    seen: list[int] = []
    tx = stack.send_request(
        options("INVITE"), Peer("udp", "127.0.0.1", udp_client.port), lambda r: seen.append(r.status)
    )
    invite = parse_message(await udp_client.queue.get())
    assert isinstance(invite, Request)
    udp_client.send(Response.for_request(invite, 180, to_tag="t").serialize(), stack.port)
    await asyncio.sleep(0.05)
    while not udp_client.queue.empty():
        udp_client.queue.get_nowait()  # a retransmission that crossed the 180
    await udp_client.nothing(0.4)
    udp_client.send(Response.for_request(invite, 486, to_tag="t").serialize(), stack.port)
    assert (await tx.final).status == 486
    ack = parse_message(await udp_client.queue.get())
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.to.tag == "t"
    assert ack.top_via.branch == invite.top_via.branch  # §17.1.1.3: same transaction
    assert seen == [180, 486]


def invite_text(port: int, client_port: int, branch: str = "z9hG4bKinv1") -> str:
    return (
        f"INVITE sip:b@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{client_port};branch={branch};rport\r\n"
        "From: <sip:a@hipper.test>;tag=a1\r\nTo: <sip:b@hipper.test>\r\nCall-ID: inv-1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:a@127.0.0.1:{client_port}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )


async def test_server_invite_timer_g_until_ack(stack: SipStack, udp_client: RawClient) -> None:
    stack.handler = Busy()
    udp_client.send(invite_text(stack.port, udp_client.port), stack.port)
    trying = await udp_client.receive()
    busy = await udp_client.receive()
    assert (trying.status, busy.status) == (100, 486)
    again = await udp_client.receive(0.2)  # Timer G: the 486 again, since no ACK came
    assert again.status == 486 and again.to.tag == busy.to.tag
    ack = (
        f"ACK sip:b@127.0.0.1:{stack.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{udp_client.port};branch=z9hG4bKinv1\r\n"
        f"From: <sip:a@hipper.test>;tag=a1\r\nTo: {busy.headers.get('To')}\r\nCall-ID: inv-1\r\nCSeq: 1 ACK\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    udp_client.send(ack, stack.port)
    await asyncio.sleep(0.05)
    while not udp_client.queue.empty():
        udp_client.queue.get_nowait()
    await udp_client.nothing(0.4)  # confirmed: retransmissions stopped
    assert stack.handler.acks == []  # the ACK of a non-2xx belongs to the transaction, not the handler


async def test_server_invite_without_ack_ends_at_timer_h(stack: SipStack, udp_client: RawClient) -> None:
    stack.handler = Busy()
    udp_client.send(invite_text(stack.port, udp_client.port, "z9hG4bKnoack"), stack.port)
    times = await arrivals(udp_client, FAST.timeout + 0.3)
    assert 10 <= len(times) <= 20  # 100, then the 486 every T1·2^n ≤ T2 until Timer H
    assert not stack.transactions.server


async def test_cancel_gets_200_and_invite_487(stack: SipStack, udp_client: RawClient) -> None:
    stack.handler = Busy(ring=True)
    udp_client.send(invite_text(stack.port, udp_client.port, "z9hG4bKcancel"), stack.port)
    assert (await udp_client.receive()).status == 100
    assert (await udp_client.receive()).status == 180
    cancel = (
        f"CANCEL sip:b@127.0.0.1:{stack.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{udp_client.port};branch=z9hG4bKcancel;rport\r\n"
        "From: <sip:a@hipper.test>;tag=a1\r\nTo: <sip:b@hipper.test>\r\nCall-ID: inv-1\r\nCSeq: 1 CANCEL\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    udp_client.send(cancel, stack.port)
    answers = {(r.cseq[1], r.status) for r in [await udp_client.receive(), await udp_client.receive()]}
    assert answers == {("CANCEL", 200), ("INVITE", 487)}


class Answer(Busy):
    """Answers every INVITE 200 and keeps the transaction, to see the 2xx retransmissions stop at the ACK."""

    def __init__(self) -> None:
        super().__init__()
        self.tx: ServerTransaction | None = None

    def on_request(self, tx: ServerTransaction) -> None:
        self.tx = tx
        tx.respond(tx.response(200))


async def test_2xx_is_retransmitted_until_the_ack(stack: SipStack, udp_client: RawClient) -> None:
    handler = Answer()
    stack.handler = handler
    udp_client.send(invite_text(stack.port, udp_client.port, "z9hG4bK2xx"), stack.port)
    assert (await udp_client.receive()).status == 100
    ok = await udp_client.receive()
    assert ok.status == 200 and (await udp_client.receive(0.2)).status == 200  # §13.3.1.4 retransmission
    ack = (
        f"ACK sip:b@127.0.0.1:{udp_client.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{udp_client.port};branch=z9hG4bKack2xx\r\n"  # a new branch, as for any 2xx
        f"From: <sip:a@hipper.test>;tag=a1\r\nTo: {ok.headers.get('To')}\r\nCall-ID: inv-1\r\nCSeq: 1 ACK\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    udp_client.send(ack, stack.port)
    assert handler.tx is not None
    async with asyncio.timeout(1):
        assert await handler.tx.acked is True
    while not udp_client.queue.empty():
        udp_client.queue.get_nowait()
    await udp_client.nothing(0.4)
    assert [a.method for a in handler.acks] == ["ACK"]


async def test_2xx_without_ack_tells_the_handler(stack: SipStack, udp_client: RawClient) -> None:
    handler = Answer()
    stack.handler = handler
    udp_client.send(invite_text(stack.port, udp_client.port, "z9hG4bKnoack2xx"), stack.port)
    await udp_client.receive()
    assert handler.tx is not None
    async with asyncio.timeout(FAST.timeout + 1):
        assert await handler.tx.acked is False  # Timer L ran out: the handler sends BYE (§13.3.1.4)


async def test_max_forwards_zero_and_no_handler(stack: SipStack, udp_client: RawClient) -> None:
    udp_client.send(
        invite_text(stack.port, udp_client.port, "z9hG4bKmf").replace("Max-Forwards: 70", "Max-Forwards: 0"), stack.port
    )
    assert (await udp_client.receive()).status == 483  # §8.2.2 / §16.3: a loop is cut here
    udp_client.send(invite_text(stack.port, udp_client.port, "z9hG4bKnohandler"), stack.port)
    assert (await udp_client.receive()).status == 100
    assert (await udp_client.receive()).status == 480  # no call handler attached yet
    udp_client.send(invite_text(stack.port, udp_client.port, "z9hG4bKodd").replace("INVITE", "FROB"), stack.port)
    assert (await udp_client.receive()).status == 501


async def test_via_names_the_advertised_host_when_bound_to_a_wildcard(udp_client: RawClient) -> None:
    sip = SipStack(timers=FAST)
    await sip.start("0.0.0.0", 0, tcp=False, advertised_host="127.0.0.1")
    try:
        tx = sip.send_request(options(), Peer("udp", "127.0.0.1", udp_client.port))
        request = parse_message(await udp_client.queue.get())
        assert isinstance(request, Request)
        via = request.top_via
        assert (via.host, via.port, "rport" in via.params) == ("127.0.0.1", sip.port, True)
        assert via.branch is not None and via.branch.startswith("z9hG4bK")
        udp_client.send(Response.for_request(request, 200, to_tag="x").serialize(), sip.port)
        assert (await tx.final).status == 200
    finally:
        await sip.close()


async def test_a_burst_that_arrives_while_the_loop_is_busy_is_answered_in_full(
    stack: SipStack, udp_client: RawClient
) -> None:
    """Signalling that arrives while the loop is not scheduled waits in the SIP socket's receive buffer; the
    kernel's default (208 KiB) held a few hundred messages and dropped the rest of a half-second stall."""
    if int(Path("/proc/sys/net/core/rmem_max").read_text()) < UDP_BUFFER_BYTES:  # noqa: ASYNC240 (procfs)
        pytest.skip("net.core.rmem_max is below the buffer the stack asks for")
    assert udp_client.transport is not None
    udp_client.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER_BYTES)
    count = 1500  # ≈ 1 MB of requests, several times the default buffer
    for index in range(count):  # the stack cannot read meanwhile: the loop is ours until we yield
        udp_client.send(
            invite_text(stack.port, udp_client.port, f"z9hG4bKburst{index}").replace("INVITE", "FROB"), stack.port
        )
    statuses = []
    with contextlib.suppress(TimeoutError):
        while len(statuses) < count:
            statuses.append((await udp_client.receive(2.0)).status)
    assert statuses == [501] * count
