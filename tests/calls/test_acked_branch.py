"""A callee branch's answered 2xx (engine/leg.py): every retransmission is ACKed again with the same bytes, by the
one handler the branch made when it ACKed the first (issue 9: it was made again for every retransmission)."""

from __future__ import annotations

import asyncio
import gc
import weakref
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


def answered_branch(stack: Any) -> tuple[CalleeLeg, Request]:
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
    return branch, invite


def two_hundred(invite: Request, to_tag: str, user: str = "bob") -> Response:
    ok = Response.for_request(invite, 200, to_tag=to_tag)
    ok.headers.add("Contact", f"<sip:{user}@127.0.0.1:5062>")
    return ok


async def test_a_retransmitted_2xx_is_acked_again_by_the_handler_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []

    class Counted(leg_module._AckedBranch):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(leg_module, "_AckedBranch", Counted)
    transactions = Transactions()
    branch, invite = answered_branch(cast(Any, SimpleNamespace(transactions=transactions)))
    ok = two_hundred(invite, "bob1")
    for _ in range(4):  # the answer, then three retransmissions (our ACK lost)
        branch._on_success(ok)
    assert len(transactions.sent) == 4 and len(set(transactions.sent)) == 1  # the same ACK each time
    assert transactions.sent[0].startswith(b"ACK sip:bob@127.0.0.1:5062 SIP/2.0")
    branch.tx = cast(Any, SimpleNamespace(on_response=None))
    branch.terminate()  # the transaction lives on for Timer M with the same handler
    assert branch.tx.on_response is made[0]
    assert len(made) == 1


async def test_a_second_dialogs_2xx_is_acked_and_ended_from_the_invites_text() -> None:
    # The handler outlives the call by Timer M (32 s, every answered branch): it must not keep the parsed INVITE
    # alive for the collector to walk, yet a second fork's 2xx (§13.2.2.4) still gets its ACK and a BYE.
    transactions = Transactions()
    byes: list[Request] = []

    def send_request(request: Request, peer: Peer) -> Any:
        byes.append(request)
        final = asyncio.get_running_loop().create_future()
        final.set_result(None)
        return SimpleNamespace(final=final)

    branch, invite = answered_branch(SimpleNamespace(transactions=transactions, send_request=send_request))
    second = two_hundred(invite, "carol1", "carol")
    branch._on_success(two_hundred(invite, "bob1"))
    handler = branch._acked
    assert handler is not None
    kept = weakref.ref(invite)
    del branch, invite
    gc.collect()
    assert kept() is None  # nothing of the call holds the parsed INVITE any more
    handler(second)
    await asyncio.sleep(0)  # the BYE goes out from a task of its own
    ack = transactions.sent[-1]
    assert ack.startswith(b"ACK sip:carol@127.0.0.1:5062 SIP/2.0") and b"tag=carol1" in ack
    assert [bye.method for bye in byes] == ["BYE"] and byes[0].to.tag == "carol1"
    assert byes[0].call_id == "acked-branch"
