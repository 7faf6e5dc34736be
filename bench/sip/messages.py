"""The SIP message work of one call set-up + teardown, in process: what the pure and the compiled build cost.

Usage: .venv/bin/python -m bench.sip.messages [--calls 20000] [--rounds 5]

One "call" is the SIP messages of `bench/sip/calls.py`'s set-up through the B2BUA, handled the way the stack,
the transaction layer and the dialog handle them: the caller's INVITE, ACK and BYE and the callee's 180, 200 and
200 (BYE) parsed, validated and asked for the headers the call path reads; the 100, 180 and 200 to the caller and
the 200 to its BYE built from their requests; the INVITE to the callee built from typed values with our Via, its
dialog's ACK and BYE; all serialised. No sockets, no timers, no database: the figure is CPU per call of the SIP
layer alone, on this process's CPU clock, best of `rounds` (the machine is shared; the best round is the one
least disturbed). Which build ran is printed (a module's file ends in .so when compiled: scripts/build-compiled).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.sip import message as message_module
from hipper.sip.dialog import Dialog, new_call_id, new_tag
from hipper.sip.message import URI, Headers, NameAddr, Request, Response, Via, parse_message
from hipper.sip.transaction import server_key, stamp_via
from hipper.sip.transport import Peer

SDP = (
    b"v=0\r\no=sipp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 47000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)
# Before issue 9 the headers took text only: the same work then went through str() (and was parsed back).
TYPED = hasattr(Headers, "parsed")
CALLER = Peer("udp", "127.0.0.1", 42109)
CALLEE = Peer("udp", "127.0.0.1", 42200)


def caller_request(method: str, cseq: int, to_tag: str = "", body: bytes = b"") -> bytes:
    to = "<sip:+31205551041@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:+31205551041@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:42109;branch=z9hG4bK-20666-42-0;rport\r\n"
        'From: "Outside" <sip:+31301234567@127.0.0.1>;tag=20666bench42\r\n'
        f"To: {to}\r\nCall-ID: 42-20666@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:+31301234567@127.0.0.1:42109>\r\nMax-Forwards: 70\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def callee_response(request: Request, status: int, to_tag: str, body: bytes = b"") -> bytes:
    response = Response.for_request(request, status, to_tag=to_tag, body=body)
    response.headers.add("Contact", "<sip:u0001@127.0.0.1:42200>")
    if body:
        response.headers.add("Content-Type", "application/sdp")
    return response.serialize()


def typed(value: NameAddr | Via) -> NameAddr | Via | str:
    return value if TYPED else str(value)


def one_call(invite_data: bytes, ack_data: bytes, bye_data: bytes, contact: str) -> int:
    """The SIP layer's work of one call; returns the bytes it wrote (so nothing is optimised away)."""
    written = 0
    # The caller's INVITE: parsed, validated, stamped, matched, answered 100 / 180 / 200.
    invite = parse_message(invite_data)
    assert isinstance(invite, Request)
    invite.validate()
    stamp_via(invite, CALLER)
    server_key(invite, invite.top_via)
    invite.to.tag  # noqa: B018 - the stack's screening reads it
    our_tag = new_tag()
    for status in (100, 180):
        written += len(Response.for_request(invite, status, to_tag=our_tag).serialize())
    uas = Dialog.as_uas(invite, Response.for_request(invite, 200, to_tag=our_tag))
    # The INVITE to the callee, built from typed values; its responses parsed and turned into a dialog.
    headers = Headers()
    headers.add("From", typed(NameAddr(invite.from_.uri, invite.from_.display_name, {"tag": new_tag()})))
    headers.add("To", typed(NameAddr(URI.parse("sip:+31205551041@hipper.test"))))
    headers.add("Call-ID", new_call_id("127.0.0.1"))
    headers.add("CSeq", "1 INVITE")
    headers.add("Max-Forwards", "70")
    headers.add("Contact", contact)
    headers.add("Content-Type", "application/sdp")
    out = Request("INVITE", URI.parse("sip:u0001@127.0.0.1:42200"), headers, SDP)
    out.headers.prepend("Via", typed(Via("UDP", "127.0.0.1", 5060, {"branch": "z9hG4bK" + new_tag(), "rport": None})))
    written += len(out.serialize())
    out.top_via.branch  # noqa: B018 - the client transaction's key
    callee_tag = new_tag()
    ringing = parse_message(callee_response(out, 180, callee_tag))
    ringing.top_via  # noqa: B018
    ringing.cseq  # noqa: B018
    ringing.to.tag  # noqa: B018
    answer = parse_message(callee_response(out, 200, callee_tag, SDP))
    answer.top_via  # noqa: B018
    answer.cseq  # noqa: B018
    assert isinstance(answer, Response)
    uac = Dialog.as_uac(out, answer)
    uac.update_from_response(answer)
    ack = uac.create_request("ACK")
    ack.headers.prepend("Via", typed(Via("UDP", "127.0.0.1", 5060, {"branch": "z9hG4bK" + new_tag(), "rport": None})))
    written += len(ack.serialize())
    ok = Response.for_request(invite, 200, to_tag=our_tag, body=SDP)
    ok.headers.add("Contact", contact)
    written += len(ok.serialize())
    # The caller's ACK and BYE; the BYE to the callee and its 200.
    for data in (ack_data, bye_data):
        request = parse_message(data)
        assert isinstance(request, Request)
        request.validate()
        stamp_via(request, CALLER)
        server_key(request, request.top_via)
        request.to.tag  # noqa: B018
        uas.accept_remote_cseq(request)
        if request.method == "BYE":
            written += len(Response.for_request(request, 200, to_tag=our_tag).serialize())
    bye = uac.create_request("BYE")
    bye.headers.prepend("Via", typed(Via("UDP", "127.0.0.1", 5060, {"branch": "z9hG4bK" + new_tag(), "rport": None})))
    written += len(bye.serialize())
    bye_ok = parse_message(callee_response(bye, 200, callee_tag))
    bye_ok.top_via  # noqa: B018
    bye_ok.cseq  # noqa: B018
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    invite = caller_request("INVITE", 1, body=SDP)
    ack = caller_request("ACK", 1, to_tag="x")
    bye = caller_request("BYE", 2, to_tag="x")
    contact = "<sip:127.0.0.1:5060;transport=udp>"
    one_call(invite, ack, bye, contact)  # warm the caches of names and compiled patterns
    best = float("inf")
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.calls):
            one_call(invite, ack, bye, contact)
        best = min(best, (time.process_time() - start) / args.calls)
    build = "compiled" if not str(message_module.__file__).endswith(".py") else "pure"
    print(json.dumps({"build": build, "sip_cpu_us_per_call": round(best * 1e6, 1), "calls": args.calls}))


if __name__ == "__main__":
    main()
