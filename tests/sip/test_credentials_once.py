"""A request's digest credentials are parsed once (sip/registrar.py, issue 9), however often they are read: the
stack's screening before the transaction, `authenticate`'s own, and the check against the device's secrets."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest

from hipper.sip import registrar as registrar_module
from hipper.sip.digest import Authenticator, Credentials, ha1, response
from hipper.sip.message import Request, Response, parse_message
from hipper.sip.registrar import Registrar
from hipper.sip.transport import Peer
from hipper.store.registrations import Device

REALM = "hipper.test"
PHONE = Peer("udp", "203.0.113.5", 5062)
DEVICE = Device(7, 3, Credentials("alice", REALM, ha1("alice", REALM, "pw"), ""))


class Directory:
    async def lookup(self, username: str) -> Device | None:
        return DEVICE if username == "alice" else None


def invite(*extra: str) -> Request:
    head = [
        "INVITE sip:202@hipper.test SIP/2.0",
        "Via: SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bK-c1",
        "From: <sip:alice@hipper.test>;tag=1",
        "To: <sip:202@hipper.test>",
        "Call-ID: credentials-once",
        "CSeq: 1 INVITE",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(head) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def answer(challenge: Response, password: str = "pw") -> str:
    found = re.search(r'nonce="([^"]+)"', challenge.headers.get("Proxy-Authenticate") or "")
    assert found is not None
    nonce, uri = found[1], "sip:202@hipper.test"
    digest = response(
        algorithm="MD5", ha1_hex=ha1("alice", REALM, password), method="INVITE", uri=uri, nonce=nonce, qop="auth",
        nc="00000001", cnonce="0a4f113b",
    )  # fmt: skip
    return (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{uri}", response="{digest}", '
        'algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"'
    )


async def test_credentials_are_parsed_once_for_the_screening_and_the_authentication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registrar = Registrar(Authenticator(REALM), cast(Any, Directory()), cast(Any, None))
    challenge = registrar.screen(invite(), PHONE, proxy=True)
    assert challenge is not None and challenge.status == 407
    parsed: list[str] = []
    real = registrar_module.parse_credentials

    def counting(value: str) -> dict[str, str]:
        parsed.append(value)
        return real(value)

    monkeypatch.setattr(registrar_module, "parse_credentials", counting)
    request = invite(f"Proxy-Authorization: {answer(challenge)}")
    assert registrar.screen(request, PHONE, proxy=True) is None  # the stack's, before the transaction
    assert await registrar.authenticate(request, PHONE, proxy=True) == DEVICE
    assert len(parsed) == 1
    # What was parsed goes with the value: other credentials on the same request are read afresh (and refused).
    request.headers.set("Proxy-Authorization", answer(challenge, password="guess"))
    refused = await registrar.authenticate(request, PHONE, proxy=True)
    assert isinstance(refused, Response) and refused.status == 403
    assert len(parsed) == 2
