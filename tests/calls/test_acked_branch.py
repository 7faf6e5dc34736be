"""A callee branch's answered 2xx (engine/leg.py): every retransmission is ACKed again with the same bytes, by the
one handler the branch made when it ACKed the first (issue 9: it was made again for every retransmission)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from hipper.engine import leg as leg_module
from hipper.engine.leg import CalleeLeg
from hipper.sip.message import URI, NameAddr, Request, Response, Via
from hipper.sip.transport import Peer

CALLEE = Peer("udp", "127.0.0.1", 5062)


class Transactions:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, peer: Peer) -> None:
        assert peer == CALLEE
        self.sent.append(data)

    def via_for(self, transport: str) -> Via:
        return Via("UDP", "127.0.0.1", 5060, {"branch": "z9hG4bK-ack", "rport": None})


async def test_a_retransmitted_2xx_is_acked_again_by_the_handler_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []

    class Counted(leg_module._AckedBranch):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(leg_module, "_AckedBranch", Counted)
    transactions = Transactions()
    stack = cast(Any, SimpleNamespace(transactions=transactions))
    call = cast(Any, SimpleNamespace(b2bua=SimpleNamespace(add_leg=lambda leg: None)))
    branch = CalleeLeg(
        stack, call, peer=CALLEE, uri=URI.parse("sip:bob@127.0.0.1:5062"),
        from_=NameAddr(URI.parse("sip:alice@hipper.test")), to=NameAddr(URI.parse("sip:bob@hipper.test")),
        label="bob",
    )  # fmt: skip
    invite = Request("INVITE", branch.uri)
    invite.headers.add("Via", Via("UDP", "127.0.0.1", 5060, {"branch": "z9hG4bK-invite"}))
    invite.headers.add("From", branch.from_)
    invite.headers.add("To", branch.to)
    invite.headers.add("Call-ID", "acked-branch")
    invite.headers.add("CSeq", "1 INVITE")
    branch.request = invite
    ok = Response.for_request(invite, 200, to_tag="bob1")
    ok.headers.add("Contact", "<sip:bob@127.0.0.1:5062>")
    for _ in range(4):  # the answer, then three retransmissions (our ACK lost)
        branch._on_success(ok)
    assert len(transactions.sent) == 4 and len(set(transactions.sent)) == 1  # the same ACK each time
    assert transactions.sent[0].startswith(b"ACK sip:bob@127.0.0.1:5062 SIP/2.0")
    branch.tx = cast(Any, SimpleNamespace(on_response=None))
    branch.terminate()  # the transaction lives on for Timer M with the same handler
    assert branch.tx.on_response is made[0]
    assert len(made) == 1
