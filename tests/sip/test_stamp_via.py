"""`stamp_via` (RFC 3261 §18.2.1 received, RFC 3581 rport) changes a Via once: the stack stamps the requests it
screens before the transaction layer stamps every request, and the second time is nothing to do (issue 9)."""

from __future__ import annotations

from hipper.sip.message import Request, Response, parse_message
from hipper.sip.transaction import ServerTransaction, TransactionLayer, stamp_via
from hipper.sip.transport import Peer, Transports

NAT = Peer("udp", "203.0.113.5", 40123)


def request(via: str, method: str = "OPTIONS") -> Request:
    text = (
        f"{method} sip:hipper.test SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@hipper.test>;tag=1\r\n"
        f"To: <sip:hipper.test>\r\nCall-ID: stamp\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_a_via_is_stamped_once_and_then_left_alone() -> None:
    for via, stamped in (
        ("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-1;rport", {"received": NAT.host, "rport": str(NAT.port)}),
        ("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-1", {"received": NAT.host}),
    ):
        message = request(via)
        stamp_via(message, NAT)
        first = message.top_via
        assert {name: first.params.get(name) for name in stamped} == stamped
        stamp_via(message, NAT)
        assert message.top_via is first, via  # not rebuilt
        assert len(message.headers.get_all("Via")) == 1
    # Stamped for another source (or a Via that only claims a `received`): stamped again, with the truth.
    message = request(f"SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-1;received={NAT.host};rport=1")
    stamp_via(message, NAT)
    assert message.top_via.params["rport"] == str(NAT.port)
    message = request("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-1;received=198.51.100.1")
    stamp_via(message, NAT)
    assert message.top_via.params["received"] == NAT.host


class Recorder:
    """A transaction user that keeps the ACKs it is handed."""

    def __init__(self) -> None:
        self.acks: list[Request] = []

    def on_request(self, tx: ServerTransaction) -> None:
        raise AssertionError("no new transaction expected")

    def on_ack(self, request: Request, peer: Peer) -> None:
        self.acks.append(request)

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None:
        raise AssertionError("no CANCEL expected")

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        raise AssertionError("no response expected")


def test_an_ack_is_not_stamped_an_rfc2543_one_is() -> None:
    # An ACK gets no answer: stamping its Via (a Via rebuilt per ACK, two per call) served nothing. With an RFC 3261
    # branch it is matched by branch and sent-by alone; an RFC 2543 ACK is matched by its whole Via, stamped as its
    # INVITE's was.
    tu = Recorder()
    layer = TransactionLayer(Transports(lambda data, peer: None), tu)
    via = "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-ack;rport"
    ack = request(via, "ACK")
    layer.receive_request(ack, NAT)
    assert tu.acks == [ack] and ack.headers.get("Via") == via
    old = request("SIP/2.0/UDP 10.0.0.5:5062;rport", "ACK")
    layer.receive_request(old, NAT)
    assert old.top_via.params == {"received": NAT.host, "rport": str(NAT.port)}
