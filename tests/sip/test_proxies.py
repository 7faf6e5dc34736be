"""Requests relayed by a trusted edge proxy (sip/proxies.py, docs/scale-out.md "Trust"): the address the proxy
attests in X-Hipper-Source is what authentication binds to; from anyone else the header means nothing."""

from __future__ import annotations

import re
from typing import Any, cast

from hipper.sip.digest import Authenticator
from hipper.sip.message import Request, parse_message
from hipper.sip.proxies import TrustedProxies
from hipper.sip.registrar import Registrar
from hipper.sip.transport import Peer

EDGE = Peer("udp", "192.0.2.10", 5060)
PHONE = "udp:203.0.113.5:5062"
ELSEWHERE = Peer("udp", "198.51.100.7", 5060)
PROXIES = TrustedProxies(frozenset({EDGE.host}))


def register(*extra: str) -> Request:
    head = [
        "REGISTER sip:hipper.test SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-edge",
        "Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-phone;received=203.0.113.5;rport=5062",
        "From: <sip:201@hipper.test>;tag=1",
        "To: <sip:201@hipper.test>",
        "Call-ID: proxies-1",
        "CSeq: 1 REGISTER",
        "Max-Forwards: 69",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(head) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_the_attested_source_counts_only_from_a_trusted_proxy() -> None:
    assert PROXIES.origin(register(f"X-Hipper-Source: {PHONE}"), EDGE) == Peer.parse(PHONE)
    # Anyone else claiming an address with the header is just themselves.
    assert PROXIES.origin(register(f"X-Hipper-Source: {PHONE}"), ELSEWHERE) == ELSEWHERE
    # The proxy's own requests (its OPTIONS probes), and a header it could not have written, stand for the proxy.
    assert PROXIES.origin(register(), EDGE) == EDGE
    for garbage in ("203.0.113.5", "udp:phone.example:5060", "sctp:203.0.113.5:5060", "udp:203.0.113.5:x"):
        assert PROXIES.origin(register(f"X-Hipper-Source: {garbage}"), EDGE) == EDGE, garbage
    # A copy the sender slipped in before the proxy's own (which it appends last) is not the one read.
    both = register("X-Hipper-Source: udp:192.0.2.99:5060", f"X-Hipper-Source: {PHONE}")
    assert PROXIES.origin(both, EDGE) == Peer.parse(PHONE)


def test_a_challenge_through_the_edge_is_bound_to_the_phone_not_to_the_edge() -> None:
    auth = Authenticator("hipper.test")
    registrar = Registrar(auth, cast(Any, None), cast(Any, None), proxies=PROXIES)
    challenge = registrar.screen(register(f"X-Hipper-Source: {PHONE}"), EDGE)
    assert challenge is not None and challenge.status == 401
    nonce = re.search(r'nonce="([^"]+)"', challenge.headers.get("WWW-Authenticate") or "")
    assert nonce is not None
    assert auth.nonce_age(nonce[1], "203.0.113.5", "REGISTER") is not None
    # Any other phone behind the same edge, and the edge itself, cannot use it.
    assert auth.nonce_age(nonce[1], EDGE.host, "REGISTER") is None
    assert auth.nonce_age(nonce[1], "203.0.113.6", "REGISTER") is None
