"""A stateless answer (a challenge before any transaction, RFC 3261 §8.2.7) goes where §18.2.2 and RFC 3581 say,
from the top Via as parsed when the request arrived: it is not parsed a second time (issue 9)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from hipper.sip import message as message_module
from hipper.sip.digest import Authenticator
from hipper.sip.message import Request, Via
from hipper.sip.registrar import Registrar
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ServerTransaction
from hipper.sip.transport import Peer

NAT = Peer("udp", "203.0.113.5", 40123)


class Handler:
    def on_request(self, tx: ServerTransaction) -> None:
        raise AssertionError("challenged before any transaction")

    def on_ack(self, request: Request, peer: Peer) -> None: ...

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None: ...

    def on_stray_response(self, response: object, peer: Peer) -> None: ...


def invite(rport: bool) -> bytes:
    return (
        "INVITE sip:202@hipper.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-s{int(rport)}{';rport' if rport else ''}\r\n"
        "From: <sip:alice@hipper.test>;tag=1\r\nTo: <sip:202@hipper.test>\r\nCall-ID: stateless\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.skipif(not str(message_module.__file__).endswith(".py"), reason="counts calls inside the pure module")
@pytest.mark.parametrize(("rport", "destination"), [(True, NAT), (False, Peer("udp", NAT.host, 5070))])
def test_a_challenge_goes_back_by_the_via_parsed_once(
    monkeypatch: pytest.MonkeyPatch, rport: bool, destination: Peer
) -> None:
    stack = SipStack(Registrar(Authenticator("hipper.test"), cast(Any, None), cast(Any, None)))
    stack.handler = Handler()
    sent: list[tuple[bytes, Peer]] = []
    monkeypatch.setattr(stack.transports, "send_nowait", lambda data, peer: sent.append((data, peer)))
    parsed: list[str] = []
    real = Via.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Via], text: str) -> Via:
        parsed.append(text)
        return cast(Via, real(cls, text))

    monkeypatch.setattr(message_module.Via, "parse", classmethod(counting))
    stack.receive(invite(rport), NAT)
    assert [(data.split(b"\r\n")[0], peer) for data, peer in sent] == [
        (b"SIP/2.0 407 Proxy Authentication Required", destination)
    ]
    assert len(parsed) == 1
